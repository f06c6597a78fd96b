using System.Text.Json;
using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>
/// A request's prompt plus its token budget must fit <c>--max-model-len</c>: an explicit budget that cannot fit is a
/// 400 naming the field the client sent and both lengths; an absent one defaults to what the context leaves.
/// </summary>
public sealed class ContextLengthTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>, IAsyncLifetime
{
    private const int ModelLength = 64;
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(model.Directory, engineOptions: TestServer.DefaultEngineOptions with { MaxModelLen = ModelLength });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private IReadOnlyList<int> Prompt(int tokens) => model.Tokenizer.Encode(string.Concat(Enumerable.Repeat("context ", 100))).Take(tokens).ToArray();

    private static string Ids(IReadOnlyList<int> ids) => JsonSerializer.Serialize(ids.ToArray());

    private static void AssertTooLong(int status, JsonElement body, string field, int promptTokens, int asked, string? param = null)
    {
        Assert.Equal(400, status);
        var error = body.GetProperty("error");
        Assert.Equal(param ?? field, error.GetProperty("param").GetString());
        var message = error.GetProperty("message").GetString()!;
        Assert.Contains(field, message);
        Assert.Contains($"{ModelLength} tokens", message);
        Assert.Contains($"{promptTokens} in the prompt", message);
        Assert.Contains($"{asked} in {field}", message);
        Assert.DoesNotContain("(Parameter", message);
    }

    [Fact]
    public async Task An_explicit_max_tokens_beyond_the_model_length_is_a_400_naming_it_and_both_lengths()
    {
        var prompt = Prompt(10);
        var (status, body) = await _server.PostAsync("/v1/completions", $$"""{"prompt": {{Ids(prompt)}}, "max_tokens": 60}""");
        AssertTooLong(status, body, "max_tokens", 10, 60);
        var fits = await _server.PostAsync("/v1/completions", $$"""{"prompt": {{Ids(prompt)}}, "max_tokens": 54, "ignore_eos": true}""");
        Assert.Equal(200, fits.Status);
        Assert.Equal(54, fits.Body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task Chat_names_max_completion_tokens_and_generate_names_max_new_tokens()
    {
        var (status, body) = await _server.PostAsync("/v1/chat/completions", """{"messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 1000}""");
        var chatPrompt = model.Tokenizer.Encode(model.Tokenizer.ApplyChatTemplate([new("user", "Hi")], addGenerationPrompt: true)).Count;
        AssertTooLong(status, body, "max_completion_tokens", chatPrompt, 1000);
        var chatMax = await _server.PostAsync("/v1/chat/completions", """{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1000}""");
        AssertTooLong(chatMax.Status, chatMax.Body, "max_tokens", chatPrompt, 1000);

        var prompt = Prompt(20);
        var generate = await _server.PostAsync("/generate", $$"""{"input_ids": {{Ids(prompt)}}, "sampling_params": {"max_new_tokens": 45} }""");
        AssertTooLong(generate.Status, generate.Body, "max_new_tokens", 20, 45, param: "sampling_params.max_new_tokens");
    }

    [Fact]
    public async Task An_absent_budget_defaults_to_what_the_context_leaves()
    {
        var prompt = Prompt(10);
        var (status, body) = await _server.PostAsync("/v1/completions", $$"""{"prompt": {{Ids(prompt)}}, "ignore_eos": true, "temperature": 0}""");
        Assert.Equal(200, status);
        Assert.Equal(ModelLength - 10, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("length", body.GetProperty("choices")[0].GetProperty("finish_reason").GetString());

        var longPrompt = Prompt(60);
        var generate = await _server.PostAsync("/generate", $$"""{"input_ids": {{Ids(longPrompt)}}, "sampling_params": {"ignore_eos": true} }""");
        Assert.Equal(200, generate.Status);
        Assert.Equal(ModelLength - 60, generate.Body.GetProperty("output_ids").GetArrayLength());
    }

    [Fact]
    public void The_engine_rejects_an_explicit_max_tokens_that_cannot_fit_instead_of_shortening_it()
    {
        using var engine = EngineRunner.Create(model, new EngineOptions { NumBlocks = 16, MaxModelLen = ModelLength });
        var request = new EngineRequest { RequestId = "long", PromptTokenIds = Prompt(10), Sampling = new SamplingParams { MaxTokens = 55 } };
        var error = Assert.Throws<ArgumentException>(() => engine.AddRequest(request, new EngineRunner()));
        Assert.Equal("max_tokens", error.ParamName);
        Assert.Contains("64 tokens", error.Message);
        Assert.Contains("10 in the prompt", error.Message);
    }
}
