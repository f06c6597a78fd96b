using System.ClientModel;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using RouteReplay.Tests.Support;
using TemplateMessage = RouteReplay.Model.Tokenization.ChatMessage;

namespace RouteReplay.Tests.Server;

/// <summary>The OpenAI-compatible endpoints against a real server, checked against the same requests run in process.</summary>
public sealed class OpenAiApiTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>, IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(model.Directory);

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private ChatClient Chat() => new("tiny", new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(_server.BaseAddress, "v1") });

    private IReadOnlyList<int> ChatPrompt(string user) =>
        model.Tokenizer.Encode(model.Tokenizer.ApplyChatTemplate([new TemplateMessage("user", user)], addGenerationPrompt: true, enableThinking: true));

    [Fact]
    public async Task The_official_client_gets_a_chat_completion_equal_to_the_engine_in_process()
    {
        var completion = (await Chat().CompleteChatAsync([new UserChatMessage("Tell me about experts.")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 8 })).Value;
        var expected = Reference.Run(model.Directory, Reference.Greedy(ChatPrompt("Tell me about experts."), 8)).Choices[0];
        Assert.Equal(expected.Text, completion.Content[0].Text);
        Assert.Equal(expected.FinishReason == RouteReplay.Engine.FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop, completion.FinishReason);
        Assert.Equal(ChatPrompt("Tell me about experts.").Count, completion.Usage.InputTokenCount);
        Assert.Equal(expected.TokenIds.Count, completion.Usage.OutputTokenCount);
        Assert.Equal("tiny", completion.Model);
    }

    [Fact]
    public async Task The_official_client_streams_the_same_text_as_the_whole_answer()
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 10 };
        var whole = (await Chat().CompleteChatAsync([new UserChatMessage("Stream this")], options)).Value;
        var text = "";
        ChatFinishReason? finish = null;
        var chunks = 0;
        await foreach (var update in Chat().CompleteChatStreamingAsync([new UserChatMessage("Stream this")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 10 }))
        {
            chunks++;
            foreach (var part in update.ContentUpdate)
            {
                text += part.Text;
            }
            finish ??= update.FinishReason;
        }
        Assert.Equal(whole.Content[0].Text, text);
        Assert.Equal(whole.FinishReason, finish);
        Assert.True(chunks >= 2, $"expected several chunks, got {chunks}");
    }

    [Fact]
    public async Task Completion_routing_equals_the_engines_byte_for_byte_with_each_choice_its_own()
    {
        var prompt = model.Tokenizer.Encode("Mixture of experts routing replay keeps training and inference in step.");
        var (status, body) = await _server.PostAsync("/v1/completions", $$"""
            {"model": "tiny", "prompt": {{JsonSerializer.Serialize(prompt.ToArray())}}, "max_tokens": 7, "temperature": 0, "n": 2,
             "return_routed_experts": true, "return_token_ids": true, "some_unknown_field": [1], "user": "u"}
            """);
        Assert.Equal(200, status);
        var expected = Reference.Run(model.Directory, Reference.Greedy(prompt, 7));
        var format = _server.Server.Host.RoutingFormat;
        Assert.Equal(prompt, Reference.Ints(body.GetProperty("prompt_token_ids")));
        var choices = body.GetProperty("choices").EnumerateArray().ToArray();
        Assert.Equal(2, choices.Length);
        foreach (var choice in choices)
        {
            var tokens = Reference.Ints(choice.GetProperty("token_ids"));
            Assert.Equal(expected.Choices[0].TokenIds, tokens);
            Assert.Equal(expected.Choices[0].Text, choice.GetProperty("text").GetString());
            var rows = prompt.Count + tokens.Length - 1;
            var data = Reference.DecodeWire(choice.GetProperty("routed_experts"), format, 0, rows);
            Assert.Equal(expected.Choices[0].Routing!.Data, data);
        }
        var usage = body.GetProperty("usage");
        Assert.Equal(prompt.Count, usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(14, usage.GetProperty("completion_tokens").GetInt32());
        Assert.True(usage.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32() >= 0);
    }

    [Fact]
    public async Task Routing_start_returns_only_the_rows_the_client_lacks()
    {
        var prompt = model.Tokenizer.Encode("A multi-turn client already holds the first rows of this conversation.");
        var (status, body) = await _server.PostAsync("/v1/completions", $$"""
            {"prompt": {{JsonSerializer.Serialize(prompt.ToArray())}}, "max_tokens": 4, "temperature": 0, "return_routed_experts": true, "routed_experts_start": 5}
            """);
        Assert.Equal(200, status);
        var expected = Reference.Run(model.Directory, Reference.Greedy(prompt, 4, routingStart: 5)).Choices[0];
        var data = Reference.DecodeWire(body.GetProperty("choices")[0].GetProperty("routed_experts"), _server.Server.Host.RoutingFormat, 5, expected.Routing!.RowCount);
        Assert.Equal(expected.Routing.Data, data);
    }

    [Fact]
    public async Task A_streamed_completion_carries_its_routing_in_the_final_chunk_and_usage_last()
    {
        var prompt = model.Tokenizer.Encode("Streaming keeps the routing for the end.");
        var events = await _server.StreamAsync("/v1/completions", $$"""
            {"prompt": "Streaming keeps the routing for the end.", "max_tokens": 6, "temperature": 0, "stream": true,
             "stream_options": {"include_usage": true}, "return_routed_experts": true, "return_token_ids": true}
            """);
        var expected = Reference.Run(model.Directory, Reference.Greedy(prompt, 6)).Choices[0];
        var withChoices = events.Where(e => e.GetProperty("choices").GetArrayLength() > 0).ToList();
        var finals = withChoices.Where(e => e.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind == JsonValueKind.String).ToList();
        var final = Assert.Single(finals);
        Assert.Equal(final.ToString(), withChoices[^1].ToString());
        var streamedTokens = withChoices.Select(e => e.GetProperty("choices")[0]).Where(c => c.TryGetProperty("token_ids", out _)).SelectMany(c => Reference.Ints(c.GetProperty("token_ids"))).ToArray();
        Assert.Equal(expected.TokenIds, streamedTokens);
        Assert.Equal(expected.Text, string.Concat(withChoices.Select(e => e.GetProperty("choices")[0].GetProperty("text").GetString())));
        Assert.All(withChoices.SkipLast(1), e => Assert.False(e.GetProperty("choices")[0].TryGetProperty("routed_experts", out _)));
        var data = Reference.DecodeWire(final.GetProperty("choices")[0].GetProperty("routed_experts"), _server.Server.Host.RoutingFormat, 0, prompt.Count + expected.TokenIds.Count - 1);
        Assert.Equal(expected.Routing!.Data, data);
        var usage = events[^1];
        Assert.Equal(0, usage.GetProperty("choices").GetArrayLength());
        Assert.Equal(expected.TokenIds.Count, usage.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task A_repeated_prompt_reports_cached_tokens_and_keeps_the_same_routing()
    {
        var text = string.Join(' ', Enumerable.Repeat("prefix caching shares blocks between requests", 6));
        var request = $$"""{"prompt": {{JsonSerializer.Serialize(text)}}, "max_tokens": 3, "temperature": 0, "return_routed_experts": true}""";
        var first = await _server.PostAsync("/v1/completions", request);
        var second = await _server.PostAsync("/v1/completions", request);
        Assert.Equal(200, second.Status);
        Assert.True(second.Body.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32() >= 16);
        Assert.Equal(
            first.Body.GetProperty("choices")[0].GetProperty("routed_experts").GetProperty("data").GetString(),
            second.Body.GetProperty("choices")[0].GetProperty("routed_experts").GetProperty("data").GetString());
    }

    [Fact]
    public async Task Chat_logprobs_and_template_kwargs_are_honoured()
    {
        var (status, body) = await _server.PostAsync("/v1/chat/completions", """
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
             "max_completion_tokens": 3, "temperature": 0, "logprobs": true, "top_logprobs": 2, "return_token_ids": true,
             "chat_template_kwargs": {"enable_thinking": false}}
            """);
        Assert.Equal(200, status);
        var expectedPrompt = model.Tokenizer.Encode(model.Tokenizer.ApplyChatTemplate([new TemplateMessage("system", "Be brief."), new TemplateMessage("user", "Hi")], true, enableThinking: false));
        Assert.Equal(expectedPrompt, Reference.Ints(body.GetProperty("prompt_token_ids")));
        var choice = body.GetProperty("choices")[0];
        var content = choice.GetProperty("logprobs").GetProperty("content").EnumerateArray().ToArray();
        Assert.Equal(Reference.Ints(choice.GetProperty("token_ids")).Length, content.Length);
        Assert.All(content, c =>
        {
            Assert.True(c.GetProperty("logprob").GetDouble() <= 0);
            Assert.Equal(2, c.GetProperty("top_logprobs").GetArrayLength());
        });
    }

    [Fact]
    public async Task Models_lists_the_served_model_and_an_unknown_model_is_404()
    {
        var (status, body) = await _server.GetAsync("/v1/models");
        Assert.Equal(200, status);
        Assert.Equal("tiny", body.GetProperty("data")[0].GetProperty("id").GetString());
        var missing = await _server.PostAsync("/v1/completions", """{"model": "gpt-4", "prompt": "x"}""");
        Assert.Equal(404, missing.Status);
        Assert.Equal("model", missing.Body.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task A_prompt_longer_than_the_model_length_names_both_lengths()
    {
        var prompt = Enumerable.Repeat(100, 5000).ToArray();
        var (status, body) = await _server.PostAsync("/v1/completions", $$"""{"prompt": {{JsonSerializer.Serialize(prompt)}}, "max_tokens": 1}""");
        Assert.Equal(400, status);
        var message = body.GetProperty("error").GetProperty("message").GetString()!;
        Assert.Contains("5000", message);
        Assert.Contains("4096", message);
    }
}
