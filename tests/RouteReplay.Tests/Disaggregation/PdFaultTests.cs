using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Disaggregation;

/// <summary>The model, a cache folder and one plain <c>serve</c> whose answers the fault tests compare with.</summary>
public sealed class PdFaultFixture : IAsyncLifetime
{
    public TinyModelFixture Model { get; } = new();

    public string Cache { get; } = Directory.CreateTempSubdirectory("routereplay-pd-faults-").FullName;

    public CliProcess Reference { get; private set; } = null!;

    public Task<CliProcess> StartAsync(params string[] extra) => StartWithWeightsAsync("test", extra);

    public Task<CliProcess> StartWithWeightsAsync(string weightsVersion, params string[] extra) => CliProcess.StartAsync(
        Cache,
        ["serve", "--model", Model.Directory, "--served-model-name", "tiny", "--port", "0", "--num-blocks", "512", "--max-num-seqs", "8", "--weights-version", weightsVersion, .. extra, .. extra.Contains("--role") ? TestClusterKey.Flags : []]);

    /// <summary>Starts several servers at once (each one's flags, weights version first); disposing the group stops them all.</summary>
    public async Task<ProcessGroup> StartAllAsync(params (string Weights, string[] Flags)[] servers)
    {
        var starting = servers.Select(s => StartWithWeightsAsync(s.Weights, s.Flags)).ToArray();
        try
        {
            return new ProcessGroup(await Task.WhenAll(starting));
        }
        catch
        {
            foreach (var started in starting.Where(t => t.IsCompletedSuccessfully))
            {
                await started.Result.DisposeAsync();
            }
            throw;
        }
    }

    public async Task InitializeAsync() => Reference = await StartAsync();

    public async Task DisposeAsync()
    {
        await Reference.DisposeAsync();
        Model.Dispose();
        Directory.Delete(Cache, recursive: true);
    }
}

/// <summary>
/// Real prefill and decode processes that die or stall in the middle of a transfer: the decode server fails cleanly
/// within its timeout, retries another prefill server, computes the prompt itself or fails the request with a clear
/// error, as configured, and every pool left returns to idle; a prefill server whose decode server dies or freezes
/// frees its held blocks; a handshake between servers of other weights is refused with the difference named.
/// </summary>
[Collection(PdProcessCollection.Name)]
public sealed class PdFaultTests(PdFaultFixture fixture) : IClassFixture<PdFaultFixture>
{
    private const string Used = "routereplay_blocks{tier=\"device\",state=\"used\"}";
    private const string BlocksReceived = "routereplay_pd_transfer_blocks_total{direction=\"received\"}";
    private const string BlocksSent = "routereplay_pd_transfer_blocks_total{direction=\"sent\"}";

    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    /// <summary>A prompt of 125 blocks (fewer when asked): on a prefill server computing 16 tokens a step, its transfer lasts long enough to be cut.</summary>
    private static EngineRequest Long(string id, int tokens = 2000) => new()
    {
        RequestId = id,
        PromptTokenIds = [.. Enumerable.Range(0, tokens).Select(i => 100 + (i * 7919 % 50000))],
        Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 6, IgnoreEos = true },
    };

    private static async Task<string> Address(CliProcess prefill) => $"127.0.0.1:{await prefill.TransferPortAsync()}";

    private static Task AssertIdle(CliProcess server) =>
        server.WaitForMetricsAsync(m => m[Used] == 0 && m["routereplay_pd_active_transfers"] == 0 && m["routereplay_pd_held_blocks"] == 0 && m["routereplay_pd_importing_requests"] == 0, TimeSpan.FromSeconds(20), "an idle pool");

    [Fact]
    public async Task A_prefill_server_killed_mid_transfer_leaves_the_decode_server_to_compute_the_prompt_itself_and_nothing_leaks()
    {
        await using var servers = await fixture.StartAllAsync(
            ("test", ["--role", "prefill", "--max-num-batched-tokens", "16"]),
            ("test", ["--role", "decode", "--pd-fallback", "local"]));
        var prefill = servers[0];
        var decode = servers[1];
        var request = Long("killed-local");
        var call = GenerateCalls.RunAsync(decode.Client, request, await Address(prefill));

        await decode.WaitForMetricsAsync(m => m[BlocksReceived] > 0, Patience, "a block arriving");
        prefill.Freeze();
        var mid = await decode.MetricsAsync();
        Assert.Equal(1, mid["routereplay_pd_importing_requests"]);
        Assert.True(mid[Used] > mid[BlocksReceived], "the decode server holds the blocks still to come");
        prefill.Kill();

        GenerateCalls.AssertIdentical(
            new() { [request.RequestId] = await GenerateCalls.RunAsync(fixture.Reference.Client, request) },
            new() { [request.RequestId] = await call });
        await AssertIdle(decode);
        var after = await decode.MetricsAsync();
        Assert.Equal(1, after["routereplay_pd_fallbacks_total{kind=\"local\"}"]);
        Assert.Equal(1, after["routereplay_pd_import_failures_total"]);
        Assert.Equal(0, after["routereplay_pd_remote_prefills_total"]);
    }

    [Fact]
    public async Task A_prefill_server_killed_or_stalled_mid_transfer_fails_the_request_within_the_timeout_when_the_fallback_is_error()
    {
        await using var servers = await fixture.StartAllAsync(
            ("test", ["--role", "prefill", "--max-num-batched-tokens", "16"]),
            ("test", ["--role", "prefill", "--max-num-batched-tokens", "16"]),
            ("test", ["--role", "decode", "--pd-fallback", "error", "--pd-transfer-timeout-ms", "1500"]));
        var killed = servers[0];
        var stalled = servers[1];
        var decode = servers[2];

        var address = await Address(killed);
        var call = GenerateCalls.PostAsync(decode.Client, Long("killed-error"), address);
        await decode.WaitForMetricsAsync(m => m[BlocksReceived] > 0, Patience, "a block arriving");
        killed.Freeze();
        Assert.Equal(1, (await decode.MetricsAsync())["routereplay_pd_importing_requests"]);
        killed.Kill();
        var (status, text) = await call;
        Assert.Equal(500, status);
        Assert.Contains($"the prompt could not be prefilled remotely (1 prefill source(s) tried, the last {address}): ", text);
        Assert.Contains($"prefill server at {address}", text);
        await AssertIdle(decode);

        address = await Address(stalled);
        var received = (await decode.MetricsAsync())[BlocksReceived];
        call = GenerateCalls.PostAsync(decode.Client, Long("stalled-error"), address);
        await decode.WaitForMetricsAsync(m => m[BlocksReceived] > received, Patience, "a block arriving");
        stalled.Freeze();
        var started = System.Diagnostics.Stopwatch.StartNew();
        (status, text) = await call;
        Assert.Equal(500, status);
        Assert.Contains($"the prompt could not be prefilled remotely (1 prefill source(s) tried, the last {address}): the prefill server at {address} sent nothing for 1500 ms during the transfer", text);
        Assert.InRange(started.Elapsed.TotalSeconds, 1.0, 20);
        await AssertIdle(decode);
        var metrics = await decode.MetricsAsync();
        Assert.Equal(2, metrics["routereplay_pd_fallbacks_total{kind=\"error\"}"]);
        Assert.Equal(2, metrics["routereplay_pd_transfers_total{result=\"failed\"}"]);
        stalled.Kill();
    }

    [Fact]
    public async Task A_request_whose_prefill_server_dies_is_retried_on_the_next_one_with_the_same_answer()
    {
        await using var servers = await fixture.StartAllAsync(
            ("test", ["--role", "prefill", "--max-num-batched-tokens", "16"]),
            ("test", ["--role", "prefill", "--max-num-batched-tokens", "16"]),
            ("test", ["--role", "decode", "--pd-fallback", "error"]));
        var first = servers[0];
        var second = servers[1];
        var decode = servers[2];
        var request = Long("retried");
        var call = GenerateCalls.RunAsync(decode.Client, request, $"{await Address(first)},{await Address(second)}");

        await first.WaitForMetricsAsync(m => m[BlocksSent] > 0, Patience, "a block leaving");
        first.Freeze();
        first.Kill();

        GenerateCalls.AssertIdentical(
            new() { [request.RequestId] = await GenerateCalls.RunAsync(fixture.Reference.Client, request) },
            new() { [request.RequestId] = await call });
        await AssertIdle(decode);
        await AssertIdle(second);
        var metrics = await decode.MetricsAsync();
        Assert.Equal(1, metrics["routereplay_pd_fallbacks_total{kind=\"retry\"}"]);
        Assert.Equal(1, metrics["routereplay_pd_remote_prefills_total"]);
        Assert.Equal(1, (await second.MetricsAsync())["routereplay_pd_transfers_total{result=\"ok\"}"]);
    }

    [Fact]
    public async Task A_decode_server_that_dies_or_freezes_mid_transfer_lets_the_prefill_server_free_its_blocks()
    {
        await using var servers = await fixture.StartAllAsync(
            ("test", ["--role", "prefill", "--max-num-batched-tokens", "16", "--pd-hold-timeout-ms", "2000"]),
            ("test", ["--role", "decode"]),
            ("test", ["--role", "decode"]));
        var prefill = servers[0];
        var killed = servers[1];
        var frozen = servers[2];
        var address = await Address(prefill);

        var lost = GenerateCalls.PostAsync(killed.Client, Long("decode-killed"), address);
        await prefill.WaitForMetricsAsync(m => m[BlocksSent] > 0, Patience, "a block leaving");
        killed.Kill();
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => lost);
        await AssertIdle(prefill);
        Assert.Equal(1, (await prefill.MetricsAsync())["routereplay_pd_transfers_total{result=\"failed\"}"]);

        var sent = (await prefill.MetricsAsync())[BlocksSent];
        var stuck = GenerateCalls.PostAsync(frozen.Client, Long("decode-frozen", 800), address);
        await prefill.WaitForMetricsAsync(m => m[BlocksSent] > sent, Patience, "a block leaving");
        frozen.Freeze();
        await prefill.WaitForMetricsAsync(m => m["routereplay_pd_held_blocks"] > 0, Patience, "the finished prefill holding its blocks");
        await AssertIdle(prefill);
        Assert.Equal(1, (await prefill.MetricsAsync())["routereplay_pd_transfers_total{result=\"hold_timeout\"}"]);
        frozen.Kill();
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => stuck);
    }

    [Fact]
    public async Task A_prefill_server_with_other_weights_is_refused_at_the_handshake_with_the_difference_named()
    {
        await using var servers = await fixture.StartAllAsync(
            ("test", ["--role", "prefill"]),
            ("other", ["--role", "decode", "--pd-fallback", "error"]),
            ("other", ["--role", "decode"]));
        var prefill = servers[0];
        var strict = servers[1];
        var lenient = servers[2];
        var address = await Address(prefill);
        var request = new EngineRequest { RequestId = "refused", PromptTokenIds = [.. Enumerable.Range(500, 40)], Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 4 } };

        var (status, text) = await GenerateCalls.PostAsync(strict.Client, request, address);

        Assert.Equal(500, status);
        Assert.Contains($"the prefill server at {address} refused the transfer: the model fingerprints differ: weights_identity is 'test' on the prefill server and 'other' on the decode server", text);
        Assert.Equal(1, (await prefill.MetricsAsync())["routereplay_pd_transfers_total{result=\"refused\"}"]);
        Assert.Contains("refused a transfer from", prefill.Output);

        var local = await GenerateCalls.RunAsync(lenient.Client, request, address);
        Assert.NotEmpty(local[0].OutputIds);
        var metrics = await lenient.MetricsAsync();
        Assert.Equal(1, metrics["routereplay_pd_transfers_total{result=\"refused\"}"]);
        Assert.Equal(1, metrics["routereplay_pd_fallbacks_total{kind=\"local\"}"]);
        await AssertIdle(strict);
        await AssertIdle(lenient);
    }
}

/// <summary>Servers started together and stopped together.</summary>
public sealed class ProcessGroup(CliProcess[] processes) : IAsyncDisposable
{
    public CliProcess this[int index] => processes[index];

    public async ValueTask DisposeAsync()
    {
        foreach (var process in processes)
        {
            await process.DisposeAsync();
        }
    }
}
