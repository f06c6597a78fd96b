using System.Collections.Concurrent;
using System.Text.Json;
using RouteReplay.Backends;
using RouteReplay.Backends.Cpu;
using RouteReplay.Engine;
using RouteReplay.Model.Presets;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>
/// Sharing the GPU with a trainer through a real server: SGLang's <c>/release_memory_occupation</c> and
/// <c>/resume_memory_occupation</c>, vLLM's <c>/sleep</c>, <c>/wake_up</c> and <c>/is_sleeping</c>. Requests that arrive
/// while released wait and then run exactly as on a fresh engine; past the wait timeout they get 503.
/// </summary>
public sealed class MemoryEndpointTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private const int Tokens = 6;

    private IReadOnlyList<int> Prompt(string words, int repeat = 4) => model.Tokenizer.Encode(string.Concat(Enumerable.Repeat(words + " ", repeat)));

    private static EngineRequest Greedy(string id, IReadOnlyList<int> prompt, int maxTokens = Tokens) => Reference.Greedy(prompt, maxTokens) with { RequestId = id };

    private static CpuBackend Backend(TestServer server) => (CpuBackend)server.Engine.Engine.Backend;

    private static Task RunningAsync(TestServer server) =>
        Eventually.WaitUntilAsync(async () => await server.Engine.InvokeAsync(e => e.RunningCount) > 0, "the long request runs");

    private static Task WaitingAsync(TestServer server, int count) =>
        Eventually.WaitUntilAsync(() => Task.FromResult(server.Server.Host.Memory.Waiting == count), $"{count} requests wait for the resume");

    /// <summary>The choice's tokens and SGLang routing equal a fresh engine's for the same request.</summary>
    private void AssertAsFreshEngine(string modelDir, EngineRequest request, GenerateCalls.Choice choice)
    {
        var expected = Reference.Run(modelDir, request).Choices[0];
        Assert.Equal(expected.TokenIds, choice.OutputIds);
        Assert.Equal(Reference.SglangLayout(expected.Routing!, model.Config.NumHiddenLayers), Convert.FromBase64String(choice.Routing));
    }

    [Fact]
    public async Task A_release_lets_requests_in_flight_finish_and_requests_arriving_meanwhile_run_after_the_resume_as_on_a_fresh_engine()
    {
        await using var server = await TestServer.StartAsync(model.Directory);
        var cachedPrompt = Prompt("a rollout prompt the prefix cache holds before the trainer's step");
        var warm = await GenerateCalls.RunAsync(server.Client, Greedy("warm", cachedPrompt));
        var longRequest = Greedy("long", Prompt("a long rollout still decoding when the release comes", 2), 80) with
        {
            Sampling = new SamplingParams { Temperature = 0, MaxTokens = 80, IgnoreEos = true },
        };
        var inFlight = GenerateCalls.RunAsync(server.Client, longRequest);
        await RunningAsync(server);

        var release = await server.PostAsync("/release_memory_occupation", "{}");

        Assert.Equal(200, release.Status);
        Assert.True(release.Body.GetProperty("success").GetBoolean());
        Assert.Equal(0, release.Body.GetProperty("num_aborted_requests").GetInt32());
        var finished = (await inFlight)[0];
        Assert.Equal("length", finished.Finish);
        Assert.Equal(80, finished.OutputIds.Length);
        AssertAsFreshEngine(model.Directory, longRequest, finished);
        var sleeping = await server.GetAsync("/is_sleeping");
        Assert.True(sleeping.Body.GetProperty("is_sleeping").GetBoolean());
        Assert.Equal(["weights", "kv_cache"], sleeping.Body.GetProperty("released").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("host_copy", sleeping.Body.GetProperty("weights").GetString());
        Assert.Equal(0, Backend(server).KvCacheBytes);
        Assert.Equal(WeightsResidence.HostCopy, Backend(server).Weights);
        Assert.Equal(1, (await server.MetricsAsync())["routereplay_memory_released{region=\"kv_cache\"}"]);

        var requests = new[]
        {
            Greedy("again", cachedPrompt),
            Greedy("other-1", Prompt("requests keep arriving while the trainer holds the GPU")),
            Greedy("other-2", Prompt("and they must wait for the resume")),
        };
        var waiting = requests.Select(r => GenerateCalls.RunAsync(server.Client, r)).ToArray();
        var completionPrompt = Prompt("an OpenAI completion waits too", 2);
        var completion = server.PostAsync("/v1/completions", $$"""
            {"prompt": {{JsonSerializer.Serialize(completionPrompt)}}, "max_tokens": {{Tokens}}, "temperature": 0, "return_token_ids": true, "return_routed_experts": true}
            """);
        await WaitingAsync(server, requests.Length + 1);
        Assert.DoesNotContain(waiting, task => task.IsCompleted);

        var resume = await server.PostAsync("/resume_memory_occupation", "{}");

        Assert.Equal(200, resume.Status);
        Assert.False(resume.Body.GetProperty("is_sleeping").GetBoolean());
        Assert.True(Backend(server).KvCacheBytes > 0);
        var answers = await Task.WhenAll(waiting);
        for (var i = 0; i < requests.Length; i++)
        {
            AssertAsFreshEngine(model.Directory, requests[i], answers[i][0]);
        }
        Assert.Equal(warm[0].OutputIds, answers[0][0].OutputIds);
        var again = await server.PostAsync("/generate", GenerateCalls.Body(Greedy("cached-again", cachedPrompt)));
        Assert.True(again.Body.GetProperty("meta_info").GetProperty("cached_tokens").GetInt32() > 0, "blocks computed after the resume are cached again");
        var (status, body) = await completion;
        Assert.Equal(200, status);
        var choice = body.GetProperty("choices")[0];
        var expected = Reference.Run(model.Directory, Greedy("completion", completionPrompt)).Choices[0];
        Assert.Equal(expected.TokenIds, Reference.Ints(choice.GetProperty("token_ids")));
        Assert.Equal(expected.Routing!.Data, Reference.DecodeWire(choice.GetProperty("routed_experts"), server.Engine.Engine.RoutingFormat, 0, completionPrompt.Count + Tokens - 1));
        Assert.Equal(0, (await server.MetricsAsync())["routereplay_memory_released{region=\"kv_cache\"}"]);
    }

    [Fact]
    public async Task Releases_and_resumes_under_concurrent_load_fail_no_request_and_every_answer_equals_a_fresh_engines()
    {
        const int Clients = 4;
        await using var server = await TestServer.StartAsync(model.Directory);
        var templates = Enumerable.Range(0, 2).SelectMany(i => new[]
        {
            Greedy($"greedy-{i}", Prompt($"rollout {i} of a load that never stops")),
            Greedy($"seeded-{i}", Prompt($"sampled rollout {i} with a seed of its own")) with
            {
                Sampling = new SamplingParams { Temperature = 1.1f, TopP = 0.9f, Seed = (ulong)(7 + i), MaxTokens = Tokens, IgnoreEos = true },
            },
        }).ToArray();
        var expected = templates.ToDictionary(t => t.RequestId, t => Reference.Run(model.Directory, t).Choices[0]);
        var answers = new ConcurrentQueue<(string Template, GenerateCalls.Choice Choice)>();
        using var stop = new CancellationTokenSource();
        async Task ClientAsync(int client)
        {
            for (var i = client; !stop.IsCancellationRequested; i++)
            {
                var template = templates[i % templates.Length];
                var choices = await GenerateCalls.RunAsync(server.Client, template with { RequestId = $"{template.RequestId}-client{client}-{i}" });
                answers.Enqueue((template.RequestId, choices[0]));
            }
        }
        Task AnswersAsync(int count, string what) => Eventually.WaitUntilAsync(() => Task.FromResult(answers.Count >= count), what);
        var clients = Enumerable.Range(0, Clients).Select(ClientAsync).ToArray();
        (string Path, string Body)[][] cycles =
        [
            [("/release_memory_occupation", "{}"), ("/resume_memory_occupation", "{}")],
            [("/sleep?level=1&mode=wait", ""), ("/wake_up", "")],
            [("/release_memory_occupation", """{"tags": ["kv_cache"]}"""), ("/resume_memory_occupation", """{"tags": ["kv_cache"]}""")],
            [("/release_memory_occupation", """{"tags": ["weights"]}"""), ("/wake_up?tags=weights", "")],
        ];

        foreach (var cycle in cycles)
        {
            await AnswersAsync(answers.Count + Clients, "every client is answered between two releases");
            var release = await server.PostAsync(cycle[0].Path, cycle[0].Body);
            Assert.Equal(200, release.Status);
            Assert.Equal(1, (await server.MetricsAsync())["routereplay_memory_sleeping"]);
            await WaitingAsync(server, Clients);
            var resume = await server.PostAsync(cycle[1].Path, cycle[1].Body);
            Assert.Equal(200, resume.Status);
        }
        await AnswersAsync(answers.Count + Clients, "every client is answered after the last resume");
        await stop.CancelAsync();
        await Task.WhenAll(clients);

        foreach (var (template, choice) in answers)
        {
            var reference = expected[template];
            Assert.True(reference.TokenIds.SequenceEqual(choice.OutputIds), $"{template}: the tokens differ from a fresh engine's");
            Assert.True(Reference.SglangLayout(reference.Routing!, model.Config.NumHiddenLayers).AsSpan().SequenceEqual(Convert.FromBase64String(choice.Routing)), $"{template}: the routing differs from a fresh engine's");
        }
        var metrics = await server.MetricsAsync();
        Assert.Equal(cycles.Length, metrics["routereplay_memory_releases_total"]);
        Assert.Equal(cycles.Length, metrics["routereplay_memory_resumes_total"]);
        Assert.Equal(0, metrics["routereplay_memory_sleeping"]);
        Assert.Equal(answers.Count, metrics["routereplay_requests_total{status=\"ok\"}"]);
        Assert.Equal(0, metrics["routereplay_requests_total{status=\"error\"}"] + metrics["routereplay_requests_total{status=\"aborted\"}"] + metrics["routereplay_requests_total{status=\"rejected\"}"]);
    }

    [Fact]
    public async Task After_sleep_level_2_a_wake_up_is_refused_until_new_weights_are_loaded_and_waiting_requests_run_on_them()
    {
        var other = Path.Combine(Path.GetTempPath(), $"routereplay-sleep-seed1-{Guid.NewGuid():N}");
        ModelMaker.Make(ModelPresets.Get("tiny"), other, seed: 1);
        try
        {
            await using var server = await TestServer.StartAsync(model.Directory);
            var sleep = await server.PostAsync("/sleep?level=2", "");
            Assert.Equal(200, sleep.Status);
            Assert.Equal(2, sleep.Body.GetProperty("level").GetInt32());
            Assert.Equal("discarded", (await server.GetAsync("/is_sleeping")).Body.GetProperty("weights").GetString());
            Assert.Equal(WeightsResidence.Discarded, Backend(server).Weights);
            Assert.Equal(1, (await server.MetricsAsync())["routereplay_memory_weights{state=\"discarded\"}"]);
            var request = Greedy("after-update", Prompt("the next rollout runs on the trainer's new weights"));
            var waiting = GenerateCalls.RunAsync(server.Client, request);
            await WaitingAsync(server, 1);

            var refused = await server.PostAsync("/wake_up", "");

            Assert.Equal(409, refused.Status);
            Assert.Equal("tags", refused.Body.GetProperty("error").GetProperty("param").GetString());
            Assert.Equal("weights_discarded", refused.Body.GetProperty("error").GetProperty("code").GetString());
            Assert.Contains("/update_weights_from_disk", refused.Body.GetProperty("error").GetProperty("message").GetString());
            Assert.True((await server.GetAsync("/is_sleeping")).Body.GetProperty("is_sleeping").GetBoolean());

            var update = await server.PostAsync("/update_weights_from_disk", $$"""{"model_path": {{JsonSerializer.Serialize(other)}}, "weight_version": "step-1"}""");

            Assert.Equal(200, update.Status);
            var state = (await server.GetAsync("/is_sleeping")).Body;
            Assert.True(state.GetProperty("is_sleeping").GetBoolean(), "the KV cache is still released");
            Assert.Equal("resident", state.GetProperty("weights").GetString());
            Assert.Equal(1, server.Server.Host.Memory.Waiting);

            var wake = await server.PostAsync("/wake_up?tags=kv_cache", "");

            Assert.Equal(200, wake.Status);
            Assert.Equal("awake", wake.Body.GetProperty("status").GetString());
            Assert.Equal(["kv_cache"], wake.Body.GetProperty("tags_woken").EnumerateArray().Select(e => e.GetString()));
            AssertAsFreshEngine(other, request, (await waiting)[0]);
            Assert.False((await server.GetAsync("/is_sleeping")).Body.GetProperty("is_sleeping").GetBoolean());
        }
        finally
        {
            Directory.Delete(other, recursive: true);
        }
    }

    [Fact]
    public async Task A_request_not_resumed_within_the_wait_timeout_gets_503_with_retry_after_and_the_server_keeps_serving()
    {
        await using var server = await TestServer.StartAsync(model.Directory, options => options with { SleepWaitTimeout = TimeSpan.FromMilliseconds(200) });
        var release = await server.PostAsync("/release_memory_occupation", """{"tags": ["kv_cache"]}""");
        Assert.Equal(200, release.Status);
        Assert.Equal(["kv_cache"], release.Body.GetProperty("released").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(WeightsResidence.Resident, Backend(server).Weights);
        var request = Greedy("late", Prompt("a request nobody resumes the server for"));

        using var response = await GenerateCalls.SendAsync(server.Client, request, null, null);

        Assert.Equal(503, (int)response.StatusCode);
        Assert.Equal(RouteReplay.Server.MemoryOccupation.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture), response.Headers.RetryAfter?.ToString());
        var error = (await TestServer.ReadJsonAsync(response)).GetProperty("error");
        Assert.Equal("memory_released", error.GetProperty("code").GetString());
        Assert.Contains("--sleep-wait-timeout-seconds", error.GetProperty("message").GetString());
        Assert.Equal(0, server.Server.Host.Memory.Waiting);
        Assert.Equal(0, server.Server.Host.Admitted);
        var metrics = await server.MetricsAsync();
        Assert.Equal(1, metrics["routereplay_requests_total{status=\"rejected\"}"]);
        Assert.Equal(1, metrics["routereplay_memory_wait_timeouts_total"]);
        Assert.Equal(200, (int)(await server.Client.GetAsync("/health")).StatusCode);
        Assert.Equal(200, (await server.PostAsync("/flush_cache", "")).Status);

        Assert.Equal(200, (await server.PostAsync("/resume_memory_occupation", """{"tags": "kv_cache"}""")).Status);

        AssertAsFreshEngine(model.Directory, request, (await GenerateCalls.RunAsync(server.Client, request))[0]);
    }

    [Fact]
    public async Task Sleep_aborts_the_requests_in_flight_by_default_as_vllm_does()
    {
        await using var server = await TestServer.StartAsync(model.Directory);
        var running = server.PostAsync("/generate", """{"text": "run until the trainer needs the GPU", "sampling_params": {"max_new_tokens": 3000, "ignore_eos": true}, "return_routed_experts": true}""");
        await RunningAsync(server);

        var sleep = await server.PostAsync("/sleep", "");

        Assert.Equal(200, sleep.Status);
        Assert.Equal(1, sleep.Body.GetProperty("num_aborted_requests").GetInt32());
        var (status, body) = await running;
        Assert.Equal(200, status);
        Assert.Equal("abort", body.GetProperty("meta_info").GetProperty("finish_reason").GetProperty("type").GetString());
        Assert.Equal(WeightsResidence.HostCopy, Backend(server).Weights);
        var wake = await server.PostAsync("/wake_up?tags=weights&tags=kv_cache", "");
        Assert.Equal("awake", wake.Body.GetProperty("status").GetString());
        var request = Greedy("after-wake", Prompt("after the wake up"));
        AssertAsFreshEngine(model.Directory, request, (await GenerateCalls.RunAsync(server.Client, request))[0]);
    }

    [Theory]
    [InlineData("/release_memory_occupation", """{"tags": ["gpu"]}""", "tags")]
    [InlineData("/release_memory_occupation", """{"tags": 5}""", "tags")]
    [InlineData("/release_memory_occupation", """{"abort_all_requests": "yes"}""", "abort_all_requests")]
    [InlineData("/resume_memory_occupation", """{"tags": ["weights", "everything"]}""", "tags")]
    [InlineData("/sleep?level=3", "", "level")]
    [InlineData("/sleep?mode=keep", "", "mode")]
    [InlineData("/wake_up?tags=gpu", "", "tags")]
    public async Task A_bad_value_is_a_400_naming_its_field_and_changes_nothing(string path, string body, string field)
    {
        await using var server = await TestServer.StartAsync(model.Directory);

        var (status, error) = await server.PostAsync(path, body);

        Assert.Equal(400, status);
        Assert.Equal(field, error.GetProperty("error").GetProperty("param").GetString());
        Assert.False((await server.GetAsync("/is_sleeping")).Body.GetProperty("is_sleeping").GetBoolean());
        Assert.False(Backend(server).KvCacheReleased);
        Assert.Equal(200, (await server.PostAsync("/generate", """{"text": "still serving", "sampling_params": {"max_new_tokens": 2}}""")).Status);
    }

    [Fact]
    public async Task The_cuda_graph_tag_is_accepted_and_releases_nothing()
    {
        await using var server = await TestServer.StartAsync(model.Directory);

        var release = await server.PostAsync("/release_memory_occupation", """{"tags": ["cuda_graph"]}""");

        Assert.Equal(200, release.Status);
        Assert.False(release.Body.GetProperty("is_sleeping").GetBoolean());
        Assert.Equal(200, (await server.PostAsync("/generate", """{"text": "still serving", "sampling_params": {"max_new_tokens": 2}}""")).Status);
    }
}
