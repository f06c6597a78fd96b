using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using RouteReplay.Server.Disaggregation;
using RouteReplay.Server.Router;
using RouteReplay.Tests.Cli;
using RouteReplay.Tests.Server;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Disaggregation;

/// <summary>
/// Real processes: a prefill and a decode server with the tests' cluster key, sharing a file block store (written only
/// on eviction, so it holds only what a test puts there), and a router over them.
/// </summary>
public sealed class RouterFleetFixture : IAsyncLifetime
{
    public TinyModelFixture Model { get; } = new();

    public string Cache { get; } = Directory.CreateTempSubdirectory("routereplay-router-").FullName;

    public string Store => Path.Combine(Cache, "store");

    public CliProcess Prefill { get; private set; } = null!;

    public CliProcess Decode { get; private set; } = null!;

    public CliProcess Router { get; private set; } = null!;

    public string[] Serve(string role, int port = 0) =>
    [
        "serve", "--model", Model.Directory, "--served-model-name", "tiny", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        "--num-blocks", "512", "--max-num-seqs", "8", "--weights-version", "test", "--role", role,
        "--kv-store", $"file:{Store}", "--kv-store-write", "evict", .. TestClusterKey.Flags,
    ];

    public string[] RouterArgs(params string[] extra) =>
        ["router", "--port", "0", "--prefill", Prefill.Url.ToString(), "--decode", Decode.Url.ToString(), .. TestClusterKey.Flags, .. extra];

    public async Task InitializeAsync()
    {
        var servers = await Task.WhenAll(CliProcess.StartAsync(Cache, Serve("prefill")), CliProcess.StartAsync(Cache, Serve("decode")));
        (Prefill, Decode) = (servers[0], servers[1]);
        Router = await CliProcess.StartAsync(Cache, RouterArgs());
    }

    /// <summary>Kills the prefill server, waits for <paramref name="whileDown"/>, and starts it again on the same port (with <c>--transfer-port 0</c> it gets another transfer port).</summary>
    public async Task<(int Before, int After)> RestartPrefillAsync(Func<Task>? whileDown = null)
    {
        var before = await Prefill.TransferPortAsync();
        Prefill.Kill();
        await Prefill.DisposeAsync();
        if (whileDown is not null)
        {
            await whileDown();
        }
        Prefill = await CliProcess.StartAsync(Cache, Serve("prefill", Prefill.Url.Port));
        var after = await Prefill.TransferPortAsync();
        Assert.NotEqual(before, after);
        return (before, after);
    }

    public async Task DisposeAsync()
    {
        foreach (var process in new[] { Router, Prefill, Decode })
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

/// <summary>
/// A router over real servers says what happened and heals: each answer names its decode server and whether its
/// prompt was transferred; a restarted prefill server's new transfer port is learned by the probes and at once after a
/// failed transfer (which is counted); servers of other weights are refused at startup and a later change is logged as
/// an error; servers going down and coming back, every 5xx, and a stream that failed after it started are logged and
/// counted as failures; past its shutdown grace the router has requests in flight end as <c>serve</c> ends them; wrong
/// methods get 405 with <c>Allow</c>; control endpoint errors name the field and no server address; a flush of a shared
/// store counts each deleted value once.
/// </summary>
[Collection(PdProcessCollection.Name)]
public sealed class RouterFleetTests(RouterFleetFixture fleet) : IClassFixture<RouterFleetFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    private static string Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : "";

    private static string Name(CliProcess process) => process.Url.ToString().TrimEnd('/');

    private static async Task<HttpResponseMessage> GenerateAsync(HttpClient client, string text, bool stream = false)
    {
        var response = await client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "/generate")
            {
                Content = Json($$$"""{"text": "{{{text}}}", "stream": {{{(stream ? "true" : "false")}}}, "return_routed_experts": true, "sampling_params": {"max_new_tokens": 4, "temperature": 0, "ignore_eos": true}}"""),
            },
            HttpCompletionOption.ResponseHeadersRead);
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return response;
    }

    /// <summary>Sends requests through <paramref name="client"/> until one's prompt is transferred; fails after <see cref="Patience"/>.</summary>
    private static async Task<HttpResponseMessage> UntilTransferredAsync(HttpClient client)
    {
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; ; i++)
        {
            var response = await GenerateAsync(client, $"until transferred {i}");
            if (Header(response, FleetHeaders.Prompt) == FleetHeaders.Transferred)
            {
                return response;
            }
            response.Dispose();
            Assert.True(deadline.Elapsed < Patience, "no prompt was transferred again");
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task An_answer_names_its_decode_server_and_the_prefill_server_its_prompt_came_from()
    {
        using var whole = await GenerateAsync(fleet.Router.Client, "Where was this prompt computed?");
        using var streamed = await GenerateAsync(fleet.Router.Client, "And this one, streamed?", stream: true);

        foreach (var response in new[] { whole, streamed })
        {
            Assert.Equal(Name(fleet.Decode), Header(response, FleetHeaders.DecodeServer));
            Assert.Equal(FleetHeaders.Transferred, Header(response, FleetHeaders.Prompt));
            Assert.Equal(Name(fleet.Prefill), Header(response, FleetHeaders.PrefillServer));
        }
        Assert.EndsWith("data: [DONE]\n\n", await streamed.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Wrong_methods_are_answered_405_with_allow_as_serve_answers_them()
    {
        foreach (var (method, path, allow) in new[] { ("GET", "/generate", "POST"), ("PUT", "/v1/chat/completions", "POST"), ("POST", "/health", "GET, HEAD"), ("DELETE", "/flush_cache", "GET, POST") })
        {
            using var routed = await fleet.Router.Client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
            using var served = await fleet.Decode.Client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
            Assert.Equal(405, (int)routed.StatusCode);
            Assert.Equal((int)served.StatusCode, (int)routed.StatusCode);
            Assert.Equal(allow, string.Join(", ", routed.Content.Headers.Allow));
            Assert.Equal(await served.Content.ReadAsStringAsync(), await routed.Content.ReadAsStringAsync());
        }
        using var missing = await fleet.Router.Client.GetAsync("/no_such_route");
        Assert.Equal(404, (int)missing.StatusCode);
        using var head = await fleet.Router.Client.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/health"));
        Assert.Equal(200, (int)head.StatusCode);
    }

    [Fact]
    public async Task Control_endpoint_errors_name_the_field_as_the_client_wrote_it_and_no_server_address()
    {
        foreach (var (path, body, param) in new[]
        {
            ("/abort_request", "{}", "rid"),
            ("/update_weights_from_disk", """{"weight_version": "v9"}""", "model_path"),
            ("/update_weights_from_disk", """{"model_path": "/no/such/checkpoint"}""", "model_path"),
            ("/flush_cache?include_store=maybe", "", "include_store"),
        })
        {
            using var response = await fleet.Router.Client.PostAsync(path, Json(body));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True((int)response.StatusCode == 400, $"{path}: {(int)response.StatusCode} {text}");
            using var error = JsonDocument.Parse(text);
            Assert.Equal(param, error.RootElement.GetProperty("error").GetProperty("param").GetString());
            Assert.DoesNotContain("127.0.0.1", text, StringComparison.Ordinal);
            Assert.DoesNotContain("http://", text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Flushing_a_store_two_servers_share_through_the_router_counts_each_deleted_value_once()
    {
        const int Values = 6000;
        for (var i = 0; i < Values; i++)
        {
            var hex = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(BitConverter.GetBytes(i)))[..32];
            var folder = Directory.CreateDirectory(Path.Combine(fleet.Store, hex[..2])).FullName;
            await File.WriteAllBytesAsync(Path.Combine(folder, hex + RouteReplay.Storage.FileBlockStore.Extension), [1]);
        }

        using var response = await fleet.Router.Client.PostAsync("/flush_cache?include_store=true", null);
        var text = await response.Content.ReadAsStringAsync();

        Assert.True((int)response.StatusCode == 200, text);
        using var answer = JsonDocument.Parse(text);
        Assert.Equal(Values, answer.RootElement.GetProperty("store_values_deleted").GetInt64());
        Assert.Empty(Directory.EnumerateFiles(fleet.Store, "*" + RouteReplay.Storage.FileBlockStore.Extension, SearchOption.AllDirectories));
    }

    [Fact]
    public async Task Servers_of_other_weights_are_refused_at_startup_and_a_later_change_is_logged_as_an_error()
    {
        async Task Update(string version)
        {
            using var update = await fleet.Decode.Client.PostAsync("/update_weights_from_disk", Json($$"""{"model_path": "{{fleet.Model.Directory}}", "weight_version": "{{version}}"}"""));
            Assert.Equal(200, (int)update.StatusCode);
        }

        await Update("other-weights");
        try
        {
            await fleet.Router.WaitForOutputAsync($"decode server {Name(fleet.Decode)} changed its weights version from 'test' to 'other-weights'", Patience);
            var error = await fleet.Router.WaitForOutputAsync("the servers' weights versions differ", Patience);
            Assert.Contains($"--prefill {Name(fleet.Prefill)} has 'test', --decode {Name(fleet.Decode)} has 'other-weights'", error);

            var (exit, _, stderr) = GenerateCliTests.RunCli(fleet.Cache, fleet.RouterArgs("--startup-timeout-seconds", "30"));
            Assert.Equal(1, exit);
            Assert.Contains($"the servers' weights versions differ: --prefill {Name(fleet.Prefill)} has 'test', --decode {Name(fleet.Decode)} has 'other-weights'; a prefill server refuses transfers to a decode server of other weights", stderr);
        }
        finally
        {
            await Update("test");
        }
        await fleet.Router.WaitForOutputAsync("every server has weights version 'test' again", Patience);
    }

    [Fact]
    public async Task A_prefill_server_restarted_on_its_port_is_logged_down_and_back_up_and_its_new_transfer_port_is_learned_by_the_probes()
    {
        var (_, after) = await fleet.RestartPrefillAsync(() => fleet.Router.WaitForOutputAsync($"prefill server {Name(fleet.Prefill)} is down", Patience));

        await fleet.Router.WaitForOutputAsync($"prefill server {Name(fleet.Prefill)} is back up", Patience);
        await fleet.Router.WaitForOutputAsync($"prefill server {Name(fleet.Prefill)} now takes transfers on port {after}", Patience);
        using var response = await GenerateAsync(fleet.Router.Client, "After the restart");
        Assert.Equal(FleetHeaders.Transferred, Header(response, FleetHeaders.Prompt));
    }

    [Fact]
    public async Task A_failed_transfer_is_counted_and_has_its_prefill_server_probed_at_once_so_the_next_prompt_is_transferred()
    {
        var options = new RouterOptions
        {
            PrefillServers = [fleet.Prefill.Url],
            DecodeServers = [fleet.Decode.Url],
            Port = 0,
            ClusterKey = TestClusterKey.Key,
            HealthInterval = TimeSpan.FromHours(1),
        };
        await using var router = await RouterServer.CreateAsync(options, logging => logging.SetMinimumLevel(LogLevel.Warning));
        await router.StartAsync();
        using var client = new HttpClient { BaseAddress = router.BaseAddress, Timeout = TimeSpan.FromMinutes(2) };
        await fleet.RestartPrefillAsync();

        using (var failed = await GenerateAsync(client, "The port the router knows is gone"))
        {
            Assert.Equal(FleetHeaders.Local, Header(failed, FleetHeaders.Prompt));
            Assert.Equal(Name(fleet.Prefill), Header(failed, FleetHeaders.PrefillFailed));
        }
        var metrics = await client.GetStringAsync("/metrics");
        Assert.Contains($"routereplay_router_upstream_failures_total{{role=\"prefill\",server=\"{Name(fleet.Prefill)}\"}} 1\n", metrics);
        using var transferred = await UntilTransferredAsync(client);
        Assert.Equal(Name(fleet.Prefill), Header(transferred, FleetHeaders.PrefillServer));
    }

    [Fact]
    public async Task A_stream_whose_decode_server_dies_after_it_started_is_logged_and_counted_as_a_failure_not_a_200()
    {
        await using var decode = await CliProcess.StartAsync(fleet.Cache, fleet.Serve("decode"));
        await using var router = await CliProcess.StartAsync(fleet.Cache, ["router", "--port", "0", "--prefill", fleet.Prefill.Url.ToString(), "--decode", decode.Url.ToString(), .. TestClusterKey.Flags]);
        using var response = await router.Client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = Json("""{"prompt": "Keep going until the decode server dies", "max_tokens": 3000, "ignore_eos": true, "stream": true}"""),
            },
            HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: {", await reader.ReadLineAsync(), StringComparison.Ordinal);

        decode.Kill();
        var rest = await reader.ReadToEndAsync();

        Assert.Contains($$"""data: {"error":{"message":"the decode server {{Name(decode)}} failed in the middle of the stream""", rest, StringComparison.Ordinal);
        Assert.EndsWith("data: [DONE]\n\n", rest, StringComparison.Ordinal);
        const string Failed = """routereplay_router_responses_total{path="/v1/completions",code="502"}""";
        var metrics = await router.WaitForMetricsAsync(m => m.ContainsKey(Failed), Patience, "the failed stream counted");
        Assert.Equal(1, metrics[Failed]);
        Assert.False(metrics.ContainsKey("""routereplay_router_responses_total{path="/v1/completions",code="200"}"""), "the failed stream was counted as a 200");
        await router.WaitForOutputAsync($"POST /v1/completions answered 502: decode server {Name(decode)} failed in the middle of the answer", Patience);
        await router.WaitForOutputAsync($"decode server {Name(decode)} is down", Patience);
    }

    [Fact]
    public async Task Past_its_shutdown_grace_the_router_has_requests_in_flight_end_with_abort_their_routing_and_done_as_serve_does()
    {
        await using var router = await CliProcess.StartAsync(fleet.Cache, fleet.RouterArgs("--shutdown-grace-seconds", "0.5"));
        const string Prompt = "Keep going until the router stops";
        using var streamed = await router.Client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = Json($$"""{"prompt": "{{Prompt}}", "max_tokens": 3000, "ignore_eos": true, "temperature": 0, "stream": true, "return_routed_experts": true, "return_token_ids": true}"""),
            },
            HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)streamed.StatusCode);
        using var reader = new StreamReader(await streamed.Content.ReadAsStreamAsync());
        var lines = new List<string> { (await reader.ReadLineAsync())! };
        var whole = router.Client.PostAsync("/generate", Json("""{"text": "And keep going too", "return_routed_experts": true, "sampling_params": {"max_new_tokens": 3000, "ignore_eos": true, "temperature": 0}}"""));
        await fleet.Decode.WaitForMetricsAsync(m => m["routereplay_running_requests"] == 2, Patience, "both requests running");

        router.Terminate();
        while (await reader.ReadLineAsync() is { } line)
        {
            lines.Add(line);
        }

        var events = lines.Where(l => l.StartsWith("data: ", StringComparison.Ordinal)).ToList();
        Assert.Equal("data: [DONE]", events[^1]);
        var choices = events.SkipLast(1).Select(l => JsonDocument.Parse(l[6..]).RootElement.GetProperty("choices")).Where(c => c.GetArrayLength() > 0).Select(c => c[0]).ToList();
        var final = Assert.Single(choices, c => c.GetProperty("finish_reason").ValueKind == JsonValueKind.String);
        Assert.Equal("abort", final.GetProperty("finish_reason").GetString());
        var tokens = choices.Where(c => c.TryGetProperty("token_ids", out _)).SelectMany(c => Reference.Ints(c.GetProperty("token_ids"))).ToArray();
        Assert.InRange(tokens.Length, 1, 2999);
        var prompt = fleet.Model.Tokenizer.Encode(Prompt);
        var expected = Reference.Run(fleet.Model.Directory, Reference.Greedy(prompt, tokens.Length) with { Sampling = new() { Temperature = 0, MaxTokens = tokens.Length, IgnoreEos = true } }).Choices[0];
        Assert.Equal(expected.TokenIds, tokens);
        var format = RouteReplay.Routing.RoutingFormat.For(fleet.Model.Config);
        Assert.Equal(expected.Routing!.Data, Reference.DecodeWire(final.GetProperty("routed_experts"), format, 0, prompt.Count + tokens.Length - 1));

        using var wholeResponse = await whole;
        Assert.Equal(200, (int)wholeResponse.StatusCode);
        var body = await TestServer.ReadJsonAsync(wholeResponse);
        Assert.Equal("abort", body.GetProperty("meta_info").GetProperty("finish_reason").GetProperty("type").GetString());
        Assert.InRange(body.GetProperty("output_ids").GetArrayLength(), 1, 2999);
        Assert.Equal(0, await router.WaitForExitAsync(Patience));
    }
}
