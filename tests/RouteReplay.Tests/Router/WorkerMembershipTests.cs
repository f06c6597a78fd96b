using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using RouteReplay.Server.Disaggregation;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Router;

/// <summary>
/// A <c>routereplay router --worker ...</c> process over the fleet's workers: workers join (<c>/add_worker</c>, checked
/// as at startup) and leave (<c>/remove_worker</c>: the answer it is writing finishes, no request goes to it after);
/// each refusal names the <c>url</c> field; a rollout's second turn goes where its first turn's prefix is; <c>/metrics</c>
/// counts, per worker, requests and choices by reason, and passes on the worker's own prefix-cache figures; a cache
/// flush through the router has it forget the prompts it sent.
/// </summary>
[Collection(WorkerFleetCollection.Name)]
public sealed class WorkerMembershipTests(WorkerFleetFixture fleet)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    private static string Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : "";

    private static HttpRequestMessage Generate(IEnumerable<int> ids, int maxNewTokens, bool stream) => new(HttpMethod.Post, "/generate")
    {
        Content = new StringContent(
            new JsonObject
            {
                ["input_ids"] = new JsonArray([.. ids.Select(i => JsonValue.Create(i))]),
                ["stream"] = stream,
                ["sampling_params"] = new JsonObject { ["max_new_tokens"] = maxNewTokens, ["temperature"] = 0, ["ignore_eos"] = true },
            }.ToJsonString(),
            Encoding.UTF8,
            "application/json"),
    };

    /// <summary>A whole <c>/generate</c> answer: its output ids and cached prompt tokens, and the worker that answered and why.</summary>
    private static async Task<(int[] Output, int Cached, string Worker, string Choice)> TurnAsync(HttpClient router, IEnumerable<int> ids)
    {
        using var response = await router.SendAsync(Generate(ids, 6, stream: false));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode} {text}");
        using var answer = JsonDocument.Parse(text);
        var output = answer.RootElement.GetProperty("output_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        return (output, answer.RootElement.GetProperty("meta_info").GetProperty("cached_tokens").GetInt32(), Header(response, FleetHeaders.Worker), Header(response, FleetHeaders.Choice));
    }

    private static async Task<JsonElement> PostAsync(HttpClient router, string pathAndQuery, int status, string? messagePart = null)
    {
        using var response = await router.PostAsync(pathAndQuery, null);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == (int)response.StatusCode, $"{pathAndQuery}: {(int)response.StatusCode} {text}");
        using var answer = JsonDocument.Parse(text);
        if (status != 200)
        {
            var error = answer.RootElement.GetProperty("error");
            Assert.Equal("url", error.GetProperty("param").GetString());
            Assert.Contains(messagePart!, error.GetProperty("message").GetString(), StringComparison.Ordinal);
        }
        return answer.RootElement.Clone();
    }

    [Fact]
    public async Task Workers_join_and_leave_through_the_router_the_answer_in_flight_finishes_and_metrics_count_requests_choices_and_hits_per_worker()
    {
        var names = fleet.Workers.Select(WorkerFleetFixture.Name).ToArray();
        await using var router = await CliProcess.StartAsync(fleet.Cache,
            "router", "--port", "0", "--worker", names[0], "--worker", names[1], "--policy", "cache_aware",
            "--balance-abs-threshold", "8", "--balance-rel-threshold", "2", "--max-tree-size", "4096", "--startup-timeout-seconds", "2");
        var client = router.Client;
        await router.WaitForOutputAsync("Choosing workers by policy cache_aware", Patience);
        Assert.Equal(names[..2], (await WorkerList.ReadAsync(client)).Select(w => w.Url));

        var added = await PostAsync(client, $"/add_worker?url={names[2]}", 200);
        Assert.True(added.GetProperty("success").GetBoolean());
        Assert.Equal(names, added.GetProperty("urls").EnumerateArray().Select(u => u.GetString()));
        await PostAsync(client, $"/add_worker?url={names[2]}", 400, $"the router already routes to the worker {names[2]}");
        await PostAsync(client, "/add_worker", 400, "'url' is required");
        await PostAsync(client, "/add_worker?url=http://127.0.0.1:1/v1", 400, "'url' must be a server's base URL like http://127.0.0.1:8001, got 'http://127.0.0.1:1/v1'");
        await PostAsync(client, "/add_worker?url=http://127.0.0.1:1", 502, "http://127.0.0.1:1 did not answer within 2 s");
        await PostAsync(client, "/remove_worker?url=http://127.0.0.1:1", 404, "the router routes to no worker http://127.0.0.1:1");
        Assert.Equal(names, (await WorkerList.ReadAsync(client)).Select(w => w.Url));

        var ids = fleet.Model.Tokenizer.Encode("Membership: a rollout whose turns must land where their prefix is, long enough for a few blocks of tokens.").ToList();
        var first = await TurnAsync(client, ids);
        ids.AddRange([.. first.Output, .. fleet.Model.Tokenizer.Encode(" Next turn.")]);
        var second = await TurnAsync(client, ids);
        var chosen = first.Worker;
        Assert.Equal("least_loaded", first.Choice);
        Assert.Equal((chosen, "cache_hit"), (second.Worker, second.Choice));
        Assert.True(second.Cached > 0, "the second turn's prefix was not cached on its worker");

        var metrics = await router.WaitForMetricsAsync(
            m => names.All(n => m.ContainsKey($"routereplay_router_worker_cached_prompt_tokens_total{{server=\"{n}\"}}")), Patience, "every worker's figures passed on");
        var owns = await Task.WhenAll(fleet.Workers.Select(w => w.MetricsAsync()));
        var own = owns[Array.IndexOf(names, chosen)];
        string Series(string name, string? reason = null) => $"{name}{{server=\"{chosen}\"{(reason is null ? "" : $",reason=\"{reason}\"")}}}";
        Assert.Equal(2, metrics[Series("routereplay_router_worker_requests_total")]);
        Assert.Equal(1, metrics[Series("routereplay_router_worker_choices_total", "least_loaded")]);
        Assert.Equal(1, metrics[Series("routereplay_router_worker_choices_total", "cache_hit")]);
        Assert.Equal(0, metrics[Series("routereplay_router_worker_choices_total", "balance")]);
        Assert.Equal(0, metrics[Series("routereplay_router_worker_retries_total")]);
        Assert.Equal(ids.Count / 16, metrics[Series("routereplay_router_worker_prefix_blocks")]);
        Assert.Equal(own["routereplay_cached_prompt_tokens_total"], metrics[Series("routereplay_router_worker_cached_prompt_tokens_total")]);
        Assert.Equal(own["routereplay_prompt_tokens_total"], metrics[Series("routereplay_router_worker_prompt_tokens_total")]);
        Assert.Equal(own["routereplay_prefix_cache_hit_rate"], metrics[Series("routereplay_router_worker_prefix_cache_hit_rate")]);
        Assert.All(names.Where(n => n != chosen), n => Assert.Equal(0, metrics[$"routereplay_router_worker_requests_total{{server=\"{n}\"}}"]));
        Assert.Equal(owns.Sum(m => m["routereplay_cached_prompt_tokens_total"]) / owns.Sum(m => m["routereplay_prompt_tokens_total"]), metrics["routereplay_router_prefix_cache_hit_rate"], 12);

        ids.AddRange([.. second.Output, .. fleet.Model.Tokenizer.Encode(" A longer turn.")]);
        using var streamed = await client.SendAsync(Generate(ids, 40, stream: true), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal((chosen, "cache_hit"), (Header(streamed, FleetHeaders.Worker), Header(streamed, FleetHeaders.Choice)));
        using var reader = new StreamReader(await streamed.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: {", await reader.ReadLineAsync(), StringComparison.Ordinal);
        var removed = await PostAsync(client, $"/remove_worker?url={chosen}", 200);
        Assert.DoesNotContain(chosen, removed.GetProperty("urls").EnumerateArray().Select(u => u.GetString()));
        var rest = await reader.ReadToEndAsync();
        Assert.DoesNotContain("\"error\"", rest, StringComparison.Ordinal);
        Assert.EndsWith("data: [DONE]\n\n", rest, StringComparison.Ordinal);

        var after = await TurnAsync(client, ids);
        Assert.NotEqual(chosen, after.Worker);
        Assert.Equal("least_loaded", after.Choice);
        await PostAsync(client, $"/remove_worker?url={chosen}", 404, $"the router routes to no worker {chosen}");
        Assert.DoesNotContain(chosen, (await WorkerList.ReadAsync(client)).Select(w => w.Url));
        var again = await TurnAsync(client, ids);
        Assert.Equal((after.Worker, "cache_hit"), (again.Worker, again.Choice));
        await WorkerFleetFixture.FlushAsync(client, servers: 2);
        Assert.Equal(0, (await CliProcess.MetricsAsync(client))[$"routereplay_router_worker_prefix_blocks{{server=\"{after.Worker}\"}}"]);
        Assert.Equal("least_loaded", (await TurnAsync(client, ids)).Choice);

        var counted = await CliProcess.MetricsAsync(client);
        Assert.Equal(1, counted["""routereplay_router_responses_total{path="/add_worker",code="200"}"""]);
        Assert.Equal(3, counted["""routereplay_router_responses_total{path="/add_worker",code="400"}"""]);
        Assert.Equal(1, counted["""routereplay_router_responses_total{path="/add_worker",code="502"}"""]);
        Assert.Equal(1, counted["""routereplay_router_responses_total{path="/remove_worker",code="200"}"""]);
        Assert.Equal(2, counted["""routereplay_router_responses_total{path="/remove_worker",code="404"}"""]);
        Assert.DoesNotContain(counted.Keys, k => k.Contains($"server=\"{chosen}\"", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_api_of_serve_goes_through_n_choices_with_routing_and_the_model_list_from_a_worker()
    {
        var names = fleet.Workers.Select(WorkerFleetFixture.Name).ToArray();
        await using var router = await CliProcess.StartAsync(fleet.Cache, ["router", "--port", "0", .. names.SelectMany(n => new[] { "--worker", n }), "--policy", "least_load"]);

        using var completions = await router.Client.PostAsync("/v1/completions", new StringContent(
            """{"model": "tiny", "prompt": "Two answers to one prompt", "n": 2, "max_tokens": 3, "temperature": 1, "seed": 5, "return_routed_experts": true}""", Encoding.UTF8, "application/json"));
        var text = await completions.Content.ReadAsStringAsync();
        Assert.True(completions.IsSuccessStatusCode, text);
        using (var answer = JsonDocument.Parse(text))
        {
            var choices = answer.RootElement.GetProperty("choices");
            Assert.Equal(2, choices.GetArrayLength());
            Assert.All(choices.EnumerateArray(), c => Assert.True(c.TryGetProperty("routed_experts", out _)));
        }
        Assert.Equal("least_loaded", Header(completions, FleetHeaders.Choice));
        Assert.Contains(Header(completions, FleetHeaders.Worker), names);

        using var models = await router.Client.GetAsync("/v1/models");
        Assert.Contains("\"tiny\"", await models.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Contains(Header(models, FleetHeaders.Worker), names);
        Assert.Equal("", Header(models, FleetHeaders.Choice));
    }

    [Fact]
    public async Task A_trainer_releases_and_resumes_every_workers_memory_through_the_router()
    {
        var names = fleet.Workers.Select(WorkerFleetFixture.Name).ToArray();
        await using var router = await CliProcess.StartAsync(fleet.Cache, ["router", "--port", "0", .. names.SelectMany(n => new[] { "--worker", n }), "--policy", "least_load"]);
        var client = router.Client;
        var ids = fleet.Model.Tokenizer.Encode("A rollout before the trainer takes the GPUs and after it gives them back.");
        var before = await TurnAsync(client, ids);

        async Task<bool> SleepingAsync(HttpClient on)
        {
            using var answer = JsonDocument.Parse(await on.GetStringAsync("/is_sleeping"));
            return answer.RootElement.GetProperty("is_sleeping").GetBoolean();
        }

        using var released = await client.PostAsync("/release_memory_occupation", new StringContent("{}", Encoding.UTF8, "application/json"));
        var text = await released.Content.ReadAsStringAsync();
        try
        {
            Assert.True(released.IsSuccessStatusCode, text);
            using var answer = JsonDocument.Parse(text);
            Assert.True(answer.RootElement.GetProperty("success").GetBoolean());
            Assert.Equal(3, answer.RootElement.GetProperty("servers").GetArrayLength());
            Assert.True(await SleepingAsync(client));
            foreach (var worker in fleet.Workers)
            {
                Assert.True(await SleepingAsync(worker.Client));
            }
        }
        finally
        {
            using var resumed = await client.PostAsync("/resume_memory_occupation", new StringContent("{}", Encoding.UTF8, "application/json"));
            Assert.True(resumed.IsSuccessStatusCode, await resumed.Content.ReadAsStringAsync());
        }
        Assert.False(await SleepingAsync(client));
        Assert.All(await Task.WhenAll(fleet.Workers.Select(w => SleepingAsync(w.Client))), Assert.False);
        Assert.Equal(before.Output, (await TurnAsync(client, ids)).Output);
    }
}
