using System.Text.Json;
using RouteReplay.Model.Presets;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>The RL control endpoints: weight updates, cache flush, abort, model info, health and metrics.</summary>
public sealed class ControlEndpointTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>, IAsyncLifetime
{
    private readonly string _work = Directory.CreateTempSubdirectory("routereplay-control-").FullName;
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(model.Directory);

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        Directory.Delete(_work, recursive: true);
    }

    private static string Generate(IReadOnlyList<int> prompt) => $$"""
        {"input_ids": {{JsonSerializer.Serialize(prompt.ToArray())}}, "sampling_params": {"max_new_tokens": 5, "temperature": 0}, "return_routed_experts": true}
        """;

    [Fact]
    public async Task New_weights_change_outputs_and_routing_and_nothing_cached_before_is_reused()
    {
        var other = Path.Combine(_work, "tiny-seed1");
        ModelMaker.Make(ModelPresets.Get("tiny"), other, seed: 1);
        var prompt = model.Tokenizer.Encode(string.Join(' ', Enumerable.Repeat("weights change between reinforcement learning steps", 8)));
        Assert.True(prompt.Count > 32);

        var before = await _server.PostAsync("/generate", Generate(prompt));
        var cached = await _server.PostAsync("/generate", Generate(prompt));
        Assert.Equal(200, cached.Status);
        Assert.True(cached.Body.GetProperty("meta_info").GetProperty("cached_tokens").GetInt32() >= 32, $"the prompt of {prompt.Count} tokens should be served from the prefix cache before the update: {cached.Body}");

        var update = await _server.PostAsync("/update_weights_from_disk", $$"""{"model_path": {{JsonSerializer.Serialize(other)}}, "weight_version": "step-1"}""");
        Assert.Equal(200, update.Status);
        Assert.True(update.Body.GetProperty("success").GetBoolean());

        var after = await _server.PostAsync("/generate", Generate(prompt));
        Assert.Equal(200, after.Status);
        var meta = after.Body.GetProperty("meta_info");
        Assert.Equal(0, meta.GetProperty("cached_tokens").GetInt32());
        Assert.Equal("step-1", meta.GetProperty("weight_version").GetString());
        Assert.NotEqual(before.Body.GetProperty("meta_info").GetProperty("routed_experts").GetString(), meta.GetProperty("routed_experts").GetString());

        var expected = Reference.Run(other, Reference.Greedy(prompt, 5)).Choices[0];
        Assert.Equal(expected.TokenIds, Reference.Ints(after.Body.GetProperty("output_ids")));
        Assert.Equal(Reference.SglangLayout(expected.Routing!, model.Config.NumHiddenLayers), Convert.FromBase64String(meta.GetProperty("routed_experts").GetString()!));
        var old = Reference.Run(model.Directory, Reference.Greedy(prompt, 5)).Choices[0];
        Assert.NotEqual(old.Routing!.Data, expected.Routing!.Data);

        var info = await _server.GetAsync("/get_model_info");
        Assert.Equal("step-1", info.Body.GetProperty("weight_version").GetString());
        Assert.Equal(Path.GetFullPath(other), info.Body.GetProperty("model_path").GetString());

        var back = await _server.PostAsync("/update_weights_from_disk", $$"""{"model_path": {{JsonSerializer.Serialize(model.Directory)}}, "weight_version": "step-2"}""");
        Assert.Equal(200, back.Status);
        var again = await _server.PostAsync("/generate", Generate(prompt));
        Assert.Equal(0, again.Body.GetProperty("meta_info").GetProperty("cached_tokens").GetInt32());
        Assert.Equal(before.Body.GetProperty("meta_info").GetProperty("routed_experts").GetString(), again.Body.GetProperty("meta_info").GetProperty("routed_experts").GetString());
    }

    [Fact]
    public async Task A_checkpoint_of_another_architecture_is_refused_and_the_old_weights_keep_serving()
    {
        var other = Path.Combine(_work, "tiny-other-theta");
        Directory.CreateDirectory(other);
        foreach (var file in Directory.GetFiles(model.Directory))
        {
            File.Copy(file, Path.Combine(other, Path.GetFileName(file)));
        }
        var config = Path.Combine(other, "config.json");
        var text = File.ReadAllText(config);
        var edited = System.Text.RegularExpressions.Regex.Replace(text, "\"rope_theta\":\\s*[0-9.eE+]+", "\"rope_theta\": 12345.0");
        Assert.NotEqual(text, edited);
        File.WriteAllText(config, edited);

        var (status, body) = await _server.PostAsync("/update_weights_from_disk", $$"""{"model_path": {{JsonSerializer.Serialize(other)}}}""");
        Assert.Equal(400, status);
        Assert.Contains("rope_theta", body.GetProperty("error").GetProperty("message").GetString());
        Assert.Equal("model_path", body.GetProperty("error").GetProperty("param").GetString());
        var missing = await _server.PostAsync("/update_weights_from_disk", """{"model_path": "/no/such/folder"}""");
        Assert.Equal(400, missing.Status);
        var info = await _server.GetAsync("/get_model_info");
        Assert.Equal(TestServer.WeightsVersion, info.Body.GetProperty("weight_version").GetString());
        Assert.Equal(200, (await _server.PostAsync("/generate", """{"text": "still here", "sampling_params": {"max_new_tokens": 2}}""")).Status);
    }

    [Fact]
    public async Task Flush_cache_makes_a_cached_prompt_compute_again()
    {
        var prompt = model.Tokenizer.Encode(string.Join(' ', Enumerable.Repeat("flush the prefix cache between steps", 6)));
        await _server.PostAsync("/generate", Generate(prompt));
        var hit = await _server.PostAsync("/generate", Generate(prompt));
        Assert.True(hit.Body.GetProperty("meta_info").GetProperty("cached_tokens").GetInt32() > 0);
        var flush = await _server.PostAsync("/flush_cache", "{}");
        Assert.Equal(200, flush.Status);
        var miss = await _server.PostAsync("/generate", Generate(prompt));
        Assert.Equal(0, miss.Body.GetProperty("meta_info").GetProperty("cached_tokens").GetInt32());
        Assert.Equal(hit.Body.GetProperty("meta_info").GetProperty("routed_experts").GetString(), miss.Body.GetProperty("meta_info").GetProperty("routed_experts").GetString());
    }

    [Fact]
    public async Task Abort_request_ends_a_running_generate_with_finish_reason_abort()
    {
        var running = _server.PostAsync("/generate", """{"text": "run long", "rid": "to-abort", "sampling_params": {"max_new_tokens": 3000, "ignore_eos": true}}""");
        var aborted = 0;
        for (var attempt = 0; attempt < 200 && aborted == 0; attempt++)
        {
            var (status, body) = await _server.PostAsync("/abort_request", """{"rid": "to-abort"}""");
            Assert.Equal(200, status);
            aborted = body.GetProperty("num_aborted_requests").GetInt32();
            if (aborted == 0)
            {
                await Task.Delay(20);
            }
        }
        Assert.Equal(1, aborted);
        var result = await running;
        Assert.Equal(200, result.Status);
        Assert.Equal("abort", result.Body.GetProperty("meta_info").GetProperty("finish_reason").GetProperty("type").GetString());
        Assert.True(result.Body.GetProperty("output_ids").GetArrayLength() < 3000);
    }

    [Fact]
    public async Task Health_and_metrics_answer_in_their_formats()
    {
        await _server.PostAsync("/generate", """{"text": "count me", "sampling_params": {"max_new_tokens": 2}, "return_routed_experts": true}""");
        using var health = await _server.Client.GetAsync("/health");
        Assert.Equal(200, (int)health.StatusCode);
        using var metrics = await _server.Client.GetAsync("/metrics");
        Assert.Equal(200, (int)metrics.StatusCode);
        var text = await metrics.Content.ReadAsStringAsync();
        foreach (var name in new[]
        {
            "routereplay_requests_total{status=\"ok\"}", "routereplay_prompt_tokens_total", "routereplay_generation_tokens_total",
            "routereplay_cached_prompt_tokens_total", "routereplay_prefix_cache_hit_rate", "routereplay_blocks{tier=\"device\",state=\"used\"}",
            "routereplay_blocks{tier=\"device\",state=\"free\"}", "routereplay_preemptions_total", "routereplay_routing_bytes_returned_total",
            "routereplay_routing_integrity_failures_total", "routereplay_step_seconds_bucket{le=\"+Inf\"}", "routereplay_waiting_requests",
        })
        {
            Assert.Contains(name, text);
        }
        var generated = text.Split('\n').Single(l => l.StartsWith("routereplay_generation_tokens_total ", StringComparison.Ordinal));
        Assert.True(long.Parse(generated.Split(' ')[1]) >= 2);
    }
}
