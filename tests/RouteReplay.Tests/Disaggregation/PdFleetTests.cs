using System.Text;
using System.Text.Json;
using RouteReplay.Tests.Cli;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Disaggregation;

/// <summary>
/// Real processes on loopback: one plain <c>serve</c> as the reference, two prefill and two decode servers, a router
/// over one of each and a router over all four. Decode servers fail a request rather than compute it locally, so
/// every answer below came through a transfer.
/// </summary>
public sealed class PdFleetFixture : IAsyncLifetime
{
    public TinyModelFixture Model { get; } = new();

    public string Cache { get; } = Directory.CreateTempSubdirectory("routereplay-pd-").FullName;

    public CliProcess Reference { get; private set; } = null!;

    public CliProcess[] Prefill { get; private set; } = [];

    public CliProcess[] Decode { get; private set; } = [];

    public CliProcess OneByOne { get; private set; } = null!;

    public CliProcess TwoByTwo { get; private set; } = null!;

    private readonly Dictionary<bool, Task<(List<RouteReplay.Engine.EngineRequest>, Dictionary<string, GenerateCalls.Choice[]>)>> _workloads = [];

    /// <summary>The shared-prefix workload with second turns, and the reference server's answers to it, made once per mode.</summary>
    public Task<(List<RouteReplay.Engine.EngineRequest> Workload, Dictionary<string, GenerateCalls.Choice[]> Reference)> WorkloadAsync(bool greedy)
    {
        lock (_workloads)
        {
            if (!_workloads.TryGetValue(greedy, out var made))
            {
                _workloads[greedy] = made = MakeAsync(greedy);
            }
            return made;
        }

        async Task<(List<RouteReplay.Engine.EngineRequest>, Dictionary<string, GenerateCalls.Choice[]>)> MakeAsync(bool greedy)
        {
            var workload = SharedPrefixWorkload.WithSecondTurns(Model, greedy);
            return (workload, await GenerateCalls.RunAllAsync(Reference.Client, workload));
        }
    }

    public string[] Serve(params string[] extra) =>
        ["serve", "--model", Model.Directory, "--served-model-name", "tiny", "--port", "0", "--num-blocks", "256", "--max-num-seqs", "16", "--weights-version", "test", .. extra, .. extra.Contains("--role") ? TestClusterKey.Flags : []];

    public async Task InitializeAsync()
    {
        var starting = new[]
        {
            CliProcess.StartAsync(Cache, Serve()),
            CliProcess.StartAsync(Cache, Serve("--role", "prefill", "--max-num-batched-tokens", "64")),
            CliProcess.StartAsync(Cache, Serve("--role", "prefill", "--max-num-batched-tokens", "64")),
            CliProcess.StartAsync(Cache, Serve("--role", "decode", "--pd-fallback", "error")),
            CliProcess.StartAsync(Cache, Serve("--role", "decode", "--pd-fallback", "error")),
        };
        var started = await Task.WhenAll(starting);
        Reference = started[0];
        Prefill = started[1..3];
        Decode = started[3..5];
        var routers = await Task.WhenAll(
            CliProcess.StartAsync(Cache, ["router", "--port", "0", "--prefill", Prefill[0].Url.ToString(), "--decode", Decode[0].Url.ToString(), .. TestClusterKey.Flags]),
            CliProcess.StartAsync(Cache, ["router", "--port", "0", "--prefill", Prefill[0].Url.ToString(), "--prefill", Prefill[1].Url.ToString(), "--decode", Decode[0].Url.ToString(), "--decode", Decode[1].Url.ToString(), .. TestClusterKey.Flags]));
        (OneByOne, TwoByTwo) = (routers[0], routers[1]);
    }

    public async Task DisposeAsync()
    {
        foreach (var process in new[] { OneByOne, TwoByTwo, Reference }.Concat(Prefill).Concat(Decode))
        {
            if (process is not null)
            {
                await process.DisposeAsync();
            }
        }
        Model.Dispose();
        Directory.Delete(Cache, recursive: true);
    }
}

[Collection(PdProcessCollection.Name)]
public sealed class PdFleetTests(PdFleetFixture fleet) : IClassFixture<PdFleetFixture>
{
    private static double Sum(Dictionary<string, double> metrics, string prefix) =>
        metrics.Where(m => m.Key.StartsWith(prefix, StringComparison.Ordinal)).Sum(m => m.Value);

    private async Task AssertThroughRouterIsIdenticalToServe(CliProcess router, bool greedy, IEnumerable<CliProcess> prefill, IEnumerable<CliProcess> decode)
    {
        var (workload, reference) = await fleet.WorkloadAsync(greedy);
        var before = await Task.WhenAll(decode.Select(d => d.MetricsAsync()));
        var routed = await GenerateCalls.RunAllAsync(router.Client, workload);

        GenerateCalls.AssertIdentical(reference, routed);
        var after = await Task.WhenAll(decode.Select(d => d.MetricsAsync()));
        var imported = after.Zip(before).Select(p => p.First["routereplay_pd_remote_prefills_total"] - p.Second["routereplay_pd_remote_prefills_total"]).ToArray();
        Assert.Equal(workload.Count, imported.Sum());
        Assert.All(imported, n => Assert.True(n > 0, "every decode server took part"));
        Assert.All(after, m => Assert.Equal(0, Sum(m, "routereplay_pd_fallbacks_total") + m["routereplay_pd_import_failures_total"]));
        foreach (var server in prefill)
        {
            var m = await server.MetricsAsync();
            Assert.True(m["routereplay_pd_transfers_total{result=\"ok\"}"] > 0, $"{server.Url} computed no prompt");
        }
        foreach (var server in prefill.Concat(decode))
        {
            await server.WaitForMetricsAsync(m => m["routereplay_blocks{tier=\"device\",state=\"used\"}"] == 0 && m["routereplay_pd_held_blocks"] == 0 && m["routereplay_pd_active_transfers"] == 0, TimeSpan.FromSeconds(10), "an idle pool");
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public Task Through_a_router_one_prefill_and_one_decode_server_the_shared_prefix_workload_is_byte_identical_to_one_serve(bool greedy) =>
        AssertThroughRouterIsIdenticalToServe(fleet.OneByOne, greedy, fleet.Prefill[..1], fleet.Decode[..1]);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public Task Through_a_router_two_prefill_and_two_decode_servers_the_shared_prefix_workload_is_byte_identical_to_one_serve(bool greedy) =>
        AssertThroughRouterIsIdenticalToServe(fleet.TwoByTwo, greedy, fleet.Prefill, fleet.Decode);

    [Fact]
    public async Task A_streamed_chat_completion_through_the_router_streams_what_one_serve_streams()
    {
        var body = """{"messages": [{"role": "user", "content": "Name the expert that routed this token."}], "max_tokens": 12, "temperature": 0.8, "seed": 11, "n": 2, "stream": true, "return_routed_experts": true, "return_token_ids": true}""";
        async Task<string[]> Stream(CliProcess process)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var response = await process.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
            var choices = new[] { new StringBuilder(), new StringBuilder() };
            string? last = null;
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            while (await reader.ReadLineAsync() is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    continue;
                }
                last = line;
                if (line == "data: [DONE]")
                {
                    break;
                }
                using var chunk = JsonDocument.Parse(line[6..]);
                foreach (var choice in chunk.RootElement.GetProperty("choices").EnumerateArray())
                {
                    var delta = choice.GetProperty("delta");
                    var text = choices[choice.GetProperty("index").GetInt32()];
                    text.Append(delta.TryGetProperty("content", out var content) ? content.GetString() : "").Append('|');
                    foreach (var field in new[] { "token_ids", "finish_reason", "routed_experts" })
                    {
                        if (choice.TryGetProperty(field, out var value))
                        {
                            text.Append(field).Append('=').Append(value.GetRawText()).Append('|');
                        }
                    }
                }
            }
            Assert.Equal("data: [DONE]", last);
            return [.. choices.Select(c => c.ToString())];
        }
        var expected = await Stream(fleet.Reference);
        var routed = await Stream(fleet.TwoByTwo);
        Assert.All(routed, c => Assert.Contains("routed_experts={", c));
        Assert.Equal(expected, routed);
    }

    [Fact]
    public async Task A_weight_update_through_the_router_reaches_every_server_and_transfers_go_on_under_the_new_fingerprint()
    {
        var body = JsonSerializer.Serialize(new { model_path = fleet.Model.Directory, weight_version = "v2" });
        using var update = await fleet.TwoByTwo.Client.PostAsync("/update_weights_from_disk", new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await update.Content.ReadAsStringAsync();
        Assert.True((int)update.StatusCode == 200, text);
        using (var answer = JsonDocument.Parse(text))
        {
            Assert.Equal("v2", answer.RootElement.GetProperty("weight_version").GetString());
            Assert.All(answer.RootElement.GetProperty("servers").EnumerateArray(), s => Assert.Equal(200, s.GetProperty("status").GetInt32()));
        }
        foreach (var server in fleet.Prefill.Concat(fleet.Decode))
        {
            using var info = JsonDocument.Parse(await server.Client.GetStringAsync("/get_model_info"));
            Assert.Equal("v2", info.RootElement.GetProperty("weight_version").GetString());
        }
        var (workload, reference) = await fleet.WorkloadAsync(greedy: false);
        var before = await Task.WhenAll(fleet.Decode.Select(d => d.MetricsAsync()));
        var routed = await GenerateCalls.RunAllAsync(fleet.TwoByTwo.Client, workload.Take(4));
        GenerateCalls.AssertIdentical(reference.Where(r => routed.ContainsKey(r.Key)).ToDictionary(), routed);
        var after = await Task.WhenAll(fleet.Decode.Select(d => d.MetricsAsync()));
        Assert.Equal(4, after.Zip(before).Sum(p => p.First["routereplay_pd_remote_prefills_total"] - p.Second["routereplay_pd_remote_prefills_total"]));
    }

    [Fact]
    public async Task Control_endpoints_reach_every_server_and_a_server_of_the_wrong_role_is_refused()
    {
        using var abort = await fleet.TwoByTwo.Client.PostAsync("/abort_request", new StringContent("""{"abort_all": true}"""));
        Assert.Equal(200, (int)abort.StatusCode);
        using var answer = JsonDocument.Parse(await abort.Content.ReadAsStringAsync());
        Assert.True(answer.RootElement.GetProperty("success").GetBoolean());
        Assert.Equal(4, answer.RootElement.GetProperty("servers").GetArrayLength());
        var before = await fleet.Prefill[1].MetricsAsync();
        using var flush = await fleet.TwoByTwo.Client.PostAsync("/flush_cache", null);
        Assert.Equal(200, (int)flush.StatusCode);
        Assert.Equal(0, (await fleet.Prefill[1].MetricsAsync())["routereplay_blocks{tier=\"device\",state=\"cached\"}"]);
        Assert.True(before.ContainsKey("routereplay_pd_held_blocks"));

        var (exit, _, stderr) = GenerateCliTests.RunCli(fleet.Cache, ["router", "--port", "0", "--prefill", fleet.Decode[0].Url.ToString(), "--decode", fleet.Decode[1].Url.ToString(), "--startup-timeout-seconds", "5", .. TestClusterKey.Flags]);
        Assert.Equal(1, exit);
        Assert.Contains($"--prefill {fleet.Decode[0].Url.ToString().TrimEnd('/')} is a server with role 'decode'; start it with 'routereplay serve --role prefill'", stderr);
    }
}

/// <summary>The tests that start prefill/decode processes run one class at a time (they load the two cores).</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class PdProcessCollection
{
    public const string Name = "prefill/decode processes";
}
