using System.Text;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.Tests.Tokenization;

[Collection(Qwen3TokenizerCollection.Name)]
public sealed class StreamingDetokenizerTests(Qwen3TokenizerFixture fixture)
{
    private const char Replacement = '\uFFFD';

    private readonly TextTokenizer _tokenizer = fixture.Tokenizer;

    public static TheoryData<string> MultiByteTexts => new(
        "Emoji: 😀🎉👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️",
        "你好，世界！今天天气很好。我们去公园散步吧。",
        "ChatML with Chinese 你好 and an emoji 🚀 inside <|im_start|>user\n你好🚀<|im_end|>",
        "नमस्ते दुनिया 안녕하세요 세계 مرحبا بالعالم",
        "🦀🦀🦀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀋𠀍 ",
        "<think>\n想一想🤔\n</think>\n\n好的👍");

    [Theory]
    [MemberData(nameof(MultiByteTexts))]
    public void Deltas_concatenate_to_the_decoded_text(string text)
    {
        var ids = _tokenizer.Encode(text);
        var deltas = Stream(ids);

        Assert.Equal(_tokenizer.Decode([.. ids]), string.Concat(deltas));
        Assert.Equal(text, string.Concat(deltas));
    }

    [Theory]
    [MemberData(nameof(MultiByteTexts))]
    public void No_delta_holds_a_partial_character(string text)
    {
        var deltas = Stream(_tokenizer.Encode(text));

        Assert.All(deltas, delta =>
        {
            Assert.DoesNotContain(Replacement, delta);
            Assert.False(delta.Length > 0 && char.IsHighSurrogate(delta[^1]), "A delta ends inside a surrogate pair.");
        });
    }

    [Fact]
    public void Holds_back_bytes_until_the_character_is_complete()
    {
        int[] rocket = [11162, 248, 222];
        var stream = new StreamingDetokenizer(_tokenizer);

        Assert.Equal(" ", stream.Append(rocket[0]));
        Assert.Equal("", stream.Append(rocket[1]));
        Assert.Equal("🚀", stream.Append(rocket[2]));
        Assert.Equal("", stream.Flush());
    }

    [Fact]
    public void Flush_turns_an_unfinished_character_into_a_replacement()
    {
        var stream = new StreamingDetokenizer(_tokenizer);
        stream.Append(11162);
        stream.Append(248);

        Assert.Equal(Replacement.ToString(), stream.Flush());
        Assert.Equal(_tokenizer.Decode([11162, 248]), " " + Replacement);
    }

    [Fact]
    public void Invalid_bytes_in_the_middle_match_decode()
    {
        int[] ids = [248, 222, 4766, 11162, 13048];
        var deltas = Stream(ids);

        Assert.Equal(_tokenizer.Decode(ids), string.Concat(deltas));
    }

    [Fact]
    public void Skips_special_tokens_when_asked()
    {
        int[] ids = [151644, 872, 198, 13048, 151645];
        var stream = new StreamingDetokenizer(_tokenizer, skipSpecialTokens: true);
        var text = new StringBuilder();
        foreach (var id in ids)
        {
            text.Append(stream.Append(id));
        }

        Assert.Equal(_tokenizer.Decode(ids, skipSpecialTokens: true), text.Append(stream.Flush()).ToString());
    }

    [Fact]
    public void Rejects_ids_outside_the_vocabulary() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new StreamingDetokenizer(_tokenizer).Append(151_700));

    private List<string> Stream(IReadOnlyList<int> ids)
    {
        var stream = new StreamingDetokenizer(_tokenizer);
        var deltas = ids.Select(stream.Append).ToList();
        deltas.Add(stream.Flush());
        return deltas;
    }
}
