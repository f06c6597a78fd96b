using System.Text.Json;
using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>
/// An aborted request that asked for routing gets the rows of the tokens it did produce (partial rollouts keep aborted
/// samples), byte for byte the rows a plain run of those tokens returns.
/// </summary>
public sealed class AbortRoutingTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>, IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(model.Directory);

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private static EngineRequest Greedy(IReadOnlyList<int> prompt, int maxTokens) => new()
    {
        RequestId = "reference",
        PromptTokenIds = prompt,
        Sampling = new SamplingParams { Temperature = 0, MaxTokens = maxTokens, IgnoreEos = true },
    };

    private async Task AbortOnceGeneratingAsync(string body)
    {
        for (var attempt = 0; attempt < 1500; attempt++)
        {
            if (await _server.Engine.InvokeAsync(e => e.Stats.GeneratedTokens > 3))
            {
                var (status, answer) = await _server.PostAsync("/abort_request", body);
                Assert.Equal(200, status);
                Assert.Equal(1, answer.GetProperty("num_aborted_requests").GetInt32());
                return;
            }
            await Task.Delay(10);
        }
        Assert.Fail("the request never generated");
    }

    [Fact]
    public async Task An_aborted_generate_returns_the_routing_of_the_tokens_it_produced_in_sglangs_layout()
    {
        var prompt = model.Tokenizer.Encode("A partial rollout keeps its aborted samples");
        var running = _server.PostAsync("/generate", $$"""
            {"input_ids": {{JsonSerializer.Serialize(prompt.ToArray())}}, "rid": "partial", "return_routed_experts": true,
             "sampling_params": {"max_new_tokens": 3500, "ignore_eos": true, "temperature": 0} }
            """);
        await AbortOnceGeneratingAsync("""{"rid": "partial"}""");
        var (status, body) = await running;
        Assert.Equal(200, status);
        var meta = body.GetProperty("meta_info");
        Assert.Equal("abort", meta.GetProperty("finish_reason").GetProperty("type").GetString());
        var outputIds = Reference.Ints(body.GetProperty("output_ids"));
        Assert.InRange(outputIds.Length, 1, 3499);
        var expected = Reference.Run(model.Directory, Greedy(prompt, outputIds.Length)).Choices[0];
        Assert.Equal(expected.TokenIds, outputIds);
        Assert.Equal(Reference.SglangLayout(expected.Routing!, model.Config.NumHiddenLayers), Convert.FromBase64String(meta.GetProperty("routed_experts").GetString()!));
    }

    [Fact]
    public async Task An_aborted_completion_returns_its_rows_in_the_wire_form_from_the_routing_start()
    {
        var prompt = model.Tokenizer.Encode("Abort all and keep the rows we have");
        var running = _server.PostAsync("/v1/completions", $$"""
            {"prompt": {{JsonSerializer.Serialize(prompt.ToArray())}}, "max_tokens": 3500, "ignore_eos": true, "temperature": 0,
             "return_routed_experts": true, "routed_experts_start": 3, "return_token_ids": true}
            """);
        await AbortOnceGeneratingAsync("""{"abort_all": true}""");
        var (status, body) = await running;
        Assert.Equal(200, status);
        var choice = body.GetProperty("choices")[0];
        Assert.Equal("abort", choice.GetProperty("finish_reason").GetString());
        var tokens = Reference.Ints(choice.GetProperty("token_ids"));
        var expected = Reference.Run(model.Directory, Greedy(prompt, tokens.Length) with { RoutingStart = 3 }).Choices[0];
        Assert.Equal(expected.TokenIds, tokens);
        Assert.Equal(expected.Routing!.Data, Reference.DecodeWire(choice.GetProperty("routed_experts"), _server.Server.Host.RoutingFormat, 3, prompt.Count + tokens.Length - 4));
    }
}
