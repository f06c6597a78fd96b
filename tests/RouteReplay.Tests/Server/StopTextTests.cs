using System.ClientModel;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using RouteReplay.Tests.Support;
using TemplateMessage = RouteReplay.Model.Tokenization.ChatMessage;

namespace RouteReplay.Tests.Server;

/// <summary>
/// What text a client sees around stop strings and stop tokens, with the model's output scripted: streamed deltas never
/// split a surrogate pair, SGLang's <c>no_stop_trim</c> keeps the matched stop text, and SGLang's default trims it.
/// </summary>
public sealed class StopTextTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private const string Emoji = "Smile 😀 then 🚀, and 👍 twice 👍";
    private const string Recital = "alpha beta STOP gamma delta";

    private IReadOnlyList<int> ChatPrompt(string user) =>
        model.Tokenizer.Encode(model.Tokenizer.ApplyChatTemplate([new TemplateMessage("user", user)], addGenerationPrompt: true, enableThinking: true));

    private Task<TestServer> ScriptedServerAsync(int promptLength, IReadOnlyList<int> script) =>
        TestServer.StartAsync(model.Directory, wrapBackend: inner => new ScriptedBackend(inner, promptLength, script));

    private static ChatClient Chat(TestServer server) =>
        new("tiny", new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "v1") });

    [Fact]
    public async Task The_official_client_streams_emoji_intact_while_stop_strings_hold_text_back()
    {
        var script = model.Tokenizer.Encode(Emoji);
        Assert.Equal(Emoji, model.Tokenizer.Decode(script.ToArray()));
        await using var server = await ScriptedServerAsync(ChatPrompt("Say it with emoji").Count, script);
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = script.Count };
        options.StopSequences.Add("zz");

        var text = new System.Text.StringBuilder();
        await foreach (var update in Chat(server).CompleteChatStreamingAsync([new UserChatMessage("Say it with emoji")], options))
        {
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }
        }

        Assert.DoesNotContain('\uFFFD', text.ToString());
        Assert.Equal(Emoji, text.ToString());
    }

    [Fact]
    public async Task Every_streamed_completion_delta_is_whole_unicode_text()
    {
        var prompt = model.Tokenizer.Encode("Emoji please");
        var script = model.Tokenizer.Encode(Emoji);
        await using var server = await ScriptedServerAsync(prompt.Count, script);
        var events = await server.StreamAsync("/v1/completions", $$"""
            {"prompt": "Emoji please", "max_tokens": {{script.Count}}, "temperature": 0, "stream": true, "stop": ["zz", "zzz"]}
            """);
        var deltas = events.Select(e => e.GetProperty("choices")[0].GetProperty("text").GetString()!).ToList();
        Assert.All(deltas, d => Assert.DoesNotContain('\uFFFD', d));
        Assert.Equal(Emoji, string.Concat(deltas));
    }

    private async Task<JsonElement> GenerateAsync(TestServer server, string samplingFields, bool stream = false)
    {
        var body = $$"""{"text": "Recite", "stream": {{(stream ? "true" : "false")}}, "sampling_params": {"temperature": 0, "max_new_tokens": 12, {{samplingFields}} } }""";
        if (stream)
        {
            return (await server.StreamAsync("/generate", body))[^1];
        }
        var (status, json) = await server.PostAsync("/generate", body);
        Assert.Equal(200, status);
        return json;
    }

    [Fact]
    public async Task No_stop_trim_and_include_stop_str_in_output_keep_the_matched_stop_string_and_the_defaults_cut_before_it()
    {
        var script = model.Tokenizer.Encode(Recital);
        await using var server = await ScriptedServerAsync(model.Tokenizer.Encode("Recite").Count, script);

        var trimmed = await GenerateAsync(server, "\"stop\": [\"STOP\"]");
        Assert.Equal("alpha beta ", trimmed.GetProperty("text").GetString());
        Assert.Equal("STOP", trimmed.GetProperty("meta_info").GetProperty("finish_reason").GetProperty("matched").GetString());

        foreach (var stream in new[] { false, true })
        {
            var kept = await GenerateAsync(server, "\"stop\": [\"STOP\"], \"no_stop_trim\": true", stream);
            var ids = Reference.Ints(kept.GetProperty("output_ids"));
            Assert.Equal(model.Tokenizer.Decode(ids), kept.GetProperty("text").GetString());
            Assert.StartsWith("alpha beta STOP", kept.GetProperty("text").GetString());
            Assert.Equal(Reference.Ints(trimmed.GetProperty("output_ids")), ids);
            var finish = kept.GetProperty("meta_info").GetProperty("finish_reason");
            Assert.Equal("stop", finish.GetProperty("type").GetString());
            Assert.Equal("STOP", finish.GetProperty("matched").GetString());
        }

        var (status, completion) = await server.PostAsync("/v1/completions", """{"prompt": "Recite", "max_tokens": 12, "temperature": 0, "stop": "STOP", "include_stop_str_in_output": true}""");
        Assert.Equal(200, status);
        Assert.StartsWith("alpha beta STOP", completion.GetProperty("choices")[0].GetProperty("text").GetString());
        var cut = await server.PostAsync("/v1/completions", """{"prompt": "Recite", "max_tokens": 12, "temperature": 0, "stop": "STOP"}""");
        Assert.Equal("alpha beta ", cut.Body.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task A_stop_token_text_is_trimmed_by_sglangs_default_and_kept_with_no_stop_trim_and_by_openai()
    {
        var script = model.Tokenizer.Encode(Recital);
        await using var server = await ScriptedServerAsync(model.Tokenizer.Encode("Recite").Count, script);
        var stopToken = script[1];
        var expectedIds = script.Take(2).ToArray();

        var trimmed = await GenerateAsync(server, $"\"stop_token_ids\": [{stopToken}]");
        Assert.Equal(expectedIds, Reference.Ints(trimmed.GetProperty("output_ids")));
        Assert.Equal(model.Tokenizer.Decode(expectedIds[..1]), trimmed.GetProperty("text").GetString());
        Assert.Equal(stopToken, trimmed.GetProperty("meta_info").GetProperty("finish_reason").GetProperty("matched").GetInt32());

        var kept = await GenerateAsync(server, $"\"stop_token_ids\": [{stopToken}], \"no_stop_trim\": true");
        Assert.Equal(model.Tokenizer.Decode(expectedIds), kept.GetProperty("text").GetString());

        var (status, completion) = await server.PostAsync("/v1/completions", $$"""{"prompt": "Recite", "max_tokens": 12, "temperature": 0, "stop_token_ids": [{{stopToken}}]}""");
        Assert.Equal(200, status);
        Assert.Equal(model.Tokenizer.Decode(expectedIds), completion.GetProperty("choices")[0].GetProperty("text").GetString());
    }
}
