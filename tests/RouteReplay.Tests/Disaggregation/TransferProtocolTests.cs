using System.Net;
using System.Net.Sockets;
using RouteReplay.Disaggregation;
using RouteReplay.Engine;
using RouteReplay.Tests.Server;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Disaggregation;

/// <summary>
/// The transfer protocol over real TCP on loopback, engines in this process: the handshake refuses a peer whose
/// block layout differs and names what differs, a peer that speaks no protocol is dropped without harm, and on
/// batch-variant backends behind real Kestrel servers the prompt rows a decode server returns are exactly the rows its
/// prefill server computed.
/// </summary>
public sealed class TransferProtocolTests(PdEngineFixture fixture) : IClassFixture<PdEngineFixture>
{
    private static readonly DisaggregationOptions Options = new() { ConnectTimeoutMs = 5_000, TransferTimeoutMs = 10_000, HoldTimeoutMs = 5_000 };

    /// <summary>A transfer server over an engine in this process.</summary>
    private sealed class Prefill : IPrefillHost, IAsyncDisposable
    {
        private readonly AsyncEngine _engine;
        private readonly TransferServer _server;
        private readonly List<string> _log = [];

        public Prefill(LlmEngine engine, DisaggregationOptions? options = null)
        {
            Description = PeerDescription.Of(engine);
            _engine = new AsyncEngine(engine);
            _server = new TransferServer(this, IPAddress.Loopback, options ?? Options, Stats, line =>
            {
                lock (_log)
                {
                    _log.Add(line);
                }
            });
            _server.Start();
        }

        public TransferStats Stats { get; } = new();

        public List<string> Log
        {
            get
            {
                lock (_log)
                {
                    return [.. _log];
                }
            }
        }

        public PeerDescription Description { get; }

        public TransferEndpoint Endpoint => new("127.0.0.1", _server.Port);

        public async Task<IDisposable> StartAsync(EngineRequest request, CancellationToken cancellationToken) => await _engine.StartAsync(request);

        public Task ReleaseAsync(BlockExport export) => _engine.InvokeAsync(e =>
        {
            e.ReleaseExport(export);
            return true;
        });

        /// <summary>Waits until the engine holds no block and the server runs no transfer.</summary>
        public async Task WaitIdleAsync()
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            while (await _engine.InvokeAsync(e => e.Pool.UsedBlockCount + e.HoldingExports) + Stats.Active > 0)
            {
                Assert.True(DateTime.UtcNow < deadline, "the prefill engine did not return to idle");
                await Task.Delay(10);
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _server.DisposeAsync();
            await _engine.DisposeAsync();
        }
    }

    private static async Task<RequestResult> DecodeAsync(LlmEngine decode, Prefill prefill, EngineRequest request, DisaggregationOptions? options = null)
    {
        var stats = new TransferStats();
        var description = PeerDescription.Of(decode);
        await using var engine = new AsyncEngine(decode);
        var source = new TransferClient(prefill.Endpoint, () => description, options ?? Options, stats);
        return await engine.GenerateAsync(request with { RemotePrefill = new RemotePrefill([source], PrefillFallback.Error) });
    }

    private EngineRequest Chat(string id) => fixture.FirstTurns(greedy: false).Workload.First(r => r.RequestId == "shared-1") with { RequestId = id };

    [Fact]
    public async Task A_decode_engine_of_another_block_size_or_channel_table_is_refused_at_the_handshake_with_the_difference_named()
    {
        await using var prefill = new Prefill(EngineRunner.Create(fixture.Model, new EngineOptions { NumBlocks = 128 }));

        var blockSize = await DecodeAsync(EngineRunner.Create(fixture.Model, new EngineOptions { NumBlocks = 256, BlockSize = 8 }), prefill, Chat("block-size"));
        Assert.IsType<RemotePrefillException>(blockSize.Error);
        Assert.Contains($"the prefill server at {prefill.Endpoint} refused the transfer: the block size differs: the prefill server's blocks hold 16 tokens, the decode server's 8 (--block-size must be equal)", blockSize.Error.Message);

        var channels = await DecodeAsync(EngineRunner.Create(fixture.Model, new EngineOptions { NumBlocks = 128 }, withTestChannel: false), prefill, Chat("channels"));
        Assert.Contains("the channel table differs: [routing: 6 bytes a row, token-position: 8 bytes a row] on the prefill server, [routing: 6 bytes a row] on the decode server", channels.Error!.Message);

        await prefill.WaitIdleAsync();
        Assert.Equal(2, prefill.Stats.Outcome(TransferOutcome.Refused));
    }

    [Fact]
    public async Task A_peer_that_speaks_no_protocol_is_dropped_and_the_next_transfer_is_served()
    {
        await using var prefill = new Prefill(EngineRunner.Create(fixture.Model, new EngineOptions { NumBlocks = 128 }));
        using (var garbage = new TcpClient())
        {
            await garbage.ConnectAsync(IPAddress.Loopback, prefill.Endpoint.Port);
            var stream = garbage.GetStream();
            await stream.WriteAsync("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray());
            var buffer = new byte[64];
            Assert.Equal(0, await stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        }

        var request = Chat("after-garbage");
        var result = await DecodeAsync(EngineRunner.Create(fixture.Model, new EngineOptions { NumBlocks = 128 }), prefill, request);

        Assert.Null(result.Error);
        Assert.Equal(fixture.FirstTurns(greedy: false).Reference["shared-1"].Choices[0].TokenIds, result.Choices[0].TokenIds);
        Assert.Equal(fixture.FirstTurns(greedy: false).Reference["shared-1"].Choices[0].Routing!.Data, result.Choices[0].Routing!.Data);
        await prefill.WaitIdleAsync();
        Assert.Contains(prefill.Log, line => line.Contains("frame of", StringComparison.Ordinal));
        Assert.Equal(1, prefill.Stats.Outcome(TransferOutcome.Ok));
        Assert.Equal(1, prefill.Stats.Outcome(TransferOutcome.Failed));
    }

    [Fact]
    public async Task A_prefill_server_with_a_cluster_key_serves_only_transfers_signed_with_it_and_logs_what_peers_cause_at_a_bounded_rate()
    {
        var keyed = Options with { ClusterKey = new ClusterKey("the-fleets-shared-secret") };
        await using var prefill = new Prefill(EngineRunner.Create(fixture.Model, new EngineOptions { NumBlocks = 128 }), keyed);
        LlmEngine Decode() => EngineRunner.Create(fixture.Model, new EngineOptions { NumBlocks = 128 });

        var unsigned = await DecodeAsync(Decode(), prefill, Chat("unsigned"));
        var wrong = await DecodeAsync(Decode(), prefill, Chat("wrong-key"), Options with { ClusterKey = new ClusterKey("another-fleets-secret") });
        for (var i = 0; i < 20; i++)
        {
            using var garbage = new TcpClient();
            await garbage.ConnectAsync(IPAddress.Loopback, prefill.Endpoint.Port);
            await garbage.GetStream().WriteAsync("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray());
            Assert.Equal(0, await garbage.GetStream().ReadAsync(new byte[64]).AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        }
        var signed = await DecodeAsync(Decode(), prefill, Chat("signed"), keyed);

        Assert.Contains($"the prefill server at {prefill.Endpoint} refused the transfer: the decode server sent no cluster key tag, and this prefill server serves only peers with its --cluster-key", unsigned.Error!.Message);
        Assert.Contains($"the prefill server at {prefill.Endpoint} refused the transfer: the decode server's cluster key tag does not match: the two servers were given different --cluster-key values", wrong.Error!.Message);
        Assert.Null(signed.Error);
        Assert.Equal(fixture.FirstTurns(greedy: false).Reference["shared-1"].Choices[0].Routing!.Data, signed.Choices[0].Routing!.Data);
        await prefill.WaitIdleAsync();
        Assert.Equal(2, prefill.Stats.Outcome(TransferOutcome.Refused));
        Assert.Equal(20, prefill.Stats.Outcome(TransferOutcome.Failed));
        Assert.Single(prefill.Log, line => line.StartsWith("refused a transfer from", StringComparison.Ordinal));
        Assert.Single(prefill.Log, line => line.Contains("frame of", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Behind_real_servers_on_batch_variant_backends_a_decode_server_returns_the_prompt_rows_its_prefill_server_computed()
    {
        FirstComputedRows? prefillRows = null;
        await using var prefill = await TestServer.StartAsync(
            fixture.Model.Directory,
            o => o with { Disaggregation = new DisaggregationOptions { Role = ServerRole.Prefill } },
            TestServer.DefaultEngineOptions with { MaxNumBatchedTokens = 32 },
            backend => new BatchVariantBackend(backend),
            engine => prefillRows = FirstComputedRows.Attach(engine));
        await using var decode = await TestServer.StartAsync(
            fixture.Model.Directory,
            o => o with { Disaggregation = new DisaggregationOptions { Role = ServerRole.Decode, Fallback = PrefillFallback.Error, ClusterKey = TestClusterKey.Key } },
            wrapBackend: backend => new BatchVariantBackend(backend));
        var address = $"127.0.0.1:{prefill.Server.Host.TransferPort}";
        var workload = fixture.FirstTurns(greedy: false).Workload;

        var answers = await GenerateCalls.RunAllAsync(decode.Client, workload, address);

        var format = prefillRows!.Format;
        var layers = fixture.Model.Config.NumHiddenLayers;
        foreach (var request in workload)
        {
            var prefillId = prefillRows.RequestIds.Single(id => id.StartsWith($"pd:{request.RequestId}:", StringComparison.Ordinal));
            var prompt = request.PromptTokenIds.Count;
            for (var c = 0; c < request.N; c++)
            {
                var wide = Convert.FromBase64String(answers[request.RequestId][c].Routing);
                var returned = new byte[prompt * format.RowBytes];
                for (var row = 0; row < prompt; row++)
                {
                    for (var m = 0; m < format.MoeLayerCount; m++)
                    {
                        for (var k = 0; k < format.TopK; k++)
                        {
                            returned[(row * format.RowBytes) + (m * format.TopK) + k] = (byte)BitConverter.ToInt32(wide, ((((row * layers) + format.MoeLayers[m]) * format.TopK) + k) * 4);
                        }
                    }
                }
                Assert.Equal(prefillRows.Rows(prefillId, c, 0, prompt), returned);
            }
        }
        var plain = fixture.FirstTurns(greedy: false).Reference;
        Assert.Contains(workload, r => !plain[r.RequestId].Choices[0].Routing!.Data.AsSpan(0, 6).SequenceEqual(Compact(answers[r.RequestId][0].Routing, format, layers)));
        using var metrics = await decode.Client.GetAsync("/metrics");
        var text = await metrics.Content.ReadAsStringAsync();
        Assert.Contains($"routereplay_pd_remote_prefills_total {workload.Count}\n", text);
    }

    /// <summary>The first row of an SGLang routing answer, as compact uint8 MoE rows.</summary>
    private static byte[] Compact(string sglang, RouteReplay.Routing.RoutingFormat format, int layers)
    {
        var wide = Convert.FromBase64String(sglang);
        var row = new byte[format.RowBytes];
        for (var m = 0; m < format.MoeLayerCount; m++)
        {
            for (var k = 0; k < format.TopK; k++)
            {
                row[(m * format.TopK) + k] = (byte)BitConverter.ToInt32(wide, ((format.MoeLayers[m] * format.TopK) + k) * 4);
            }
        }
        return row;
    }
}
