using System.Text.Json;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.Tests.Tokenization;

[Collection(Qwen3TokenizerCollection.Name)]
public sealed class ChatTemplateTests(Qwen3TokenizerFixture fixture)
{
    private const string Expected = "chat_expected.json";
    private const string TemplateExpected = "chat_template_expected.json";

    private readonly TextTokenizer _tokenizer = fixture.Tokenizer;

    public static TheoryData<int> Cases => FixtureFile.Indexes(Expected);

    public static TheoryData<int> TemplateCases => FixtureFile.Indexes(TemplateExpected);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Renders_like_hugging_face(int index) => AssertRendersLikeHuggingFace(FixtureFile.Entry(Expected, index));

    [Theory]
    [MemberData(nameof(TemplateCases))]
    public void Renders_reasoning_and_roles_like_hugging_face(int index) => AssertRendersLikeHuggingFace(FixtureFile.Entry(TemplateExpected, index));

    [Theory]
    [MemberData(nameof(Cases))]
    public void Rendered_chat_round_trips_through_token_ids(int index)
    {
        var text = FixtureFile.String(FixtureFile.Entry(Expected, index), "text");
        var ids = _tokenizer.Encode(text);

        Assert.Equal(text, _tokenizer.Decode([.. ids]));
        Assert.Equal(151_644, ids[0]);
    }

    [Fact]
    public void Rejects_tool_messages()
    {
        var error = Assert.Throws<NotSupportedException>(() => _tokenizer.ApplyChatTemplate([new("user", "q"), new("tool", "42")]));

        Assert.Contains("tool", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Rejects_an_empty_conversation() =>
        Assert.Throws<ArgumentException>(() => _tokenizer.ApplyChatTemplate([]));

    [Theory]
    [InlineData("developer")]
    [InlineData("User")]
    [InlineData("")]
    public void Rejects_unknown_roles(string role)
    {
        var error = Assert.Throws<ArgumentException>(() => new ChatMessage(role, "hi"));

        Assert.Contains($"'{role}'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Rejects_unknown_roles_set_after_construction() =>
        Assert.Throws<ArgumentException>(() => new ChatMessage("user", "hi") with { Role = "narrator" });

    [Fact]
    public void Recognizes_only_the_qwen3_template()
    {
        Assert.False(Qwen3ChatTemplate.Recognizes("{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}"));
    }

    private void AssertRendersLikeHuggingFace(JsonElement entry)
    {
        var messages = entry.GetProperty("messages").EnumerateArray().Select(ToMessage).ToList();
        var addGenerationPrompt = !entry.TryGetProperty("add_generation_prompt", out var add) || add.GetBoolean();
        var enableThinking = entry.GetProperty("enable_thinking").GetBoolean();

        Assert.Equal(FixtureFile.String(entry, "text"), _tokenizer.ApplyChatTemplate(messages, addGenerationPrompt, enableThinking));
    }

    private static ChatMessage ToMessage(JsonElement message) => new(
        FixtureFile.String(message, "role"),
        FixtureFile.String(message, "content"),
        message.TryGetProperty("reasoning_content", out var reasoning) ? reasoning.GetString() : null);
}
