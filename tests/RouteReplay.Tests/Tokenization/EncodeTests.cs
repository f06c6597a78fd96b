using RouteReplay.Model;
using Xunit;

namespace RouteReplay.Tests.Tokenization;

[Collection(Qwen3TokenizerCollection.Name)]
public sealed class EncodeTests(Qwen3TokenizerFixture fixture)
{
    private const string _expected = "tokenizer_expected.json";
    private const string _nfcExpected = "tokenizer_nfc_expected.json";

    private readonly TextTokenizer _tokenizer = fixture.Tokenizer;

    public static TheoryData<int> Cases => FixtureFile.Indexes(_expected);

    public static TheoryData<int> NfcCases => FixtureFile.Indexes(_nfcExpected);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Encodes_like_hugging_face(int index)
    {
        var entry = FixtureFile.Entry(_expected, index);
        var text = FixtureFile.String(entry, "text");

        Assert.Equal(FixtureFile.Ids(entry.GetProperty("ids")), _tokenizer.Encode(text));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Decoding_the_encoding_gives_the_text_back(int index)
    {
        var text = FixtureFile.String(FixtureFile.Entry(_expected, index), "text");

        Assert.Equal(text, _tokenizer.Decode([.. _tokenizer.Encode(text)]));
    }

    [Theory]
    [MemberData(nameof(NfcCases))]
    public void Normalizes_to_nfc_between_added_tokens_like_hugging_face(int index)
    {
        var entry = FixtureFile.Entry(_nfcExpected, index);
        var ids = _tokenizer.Encode(FixtureFile.String(entry, "text"));

        Assert.Equal(FixtureFile.Ids(entry.GetProperty("ids")), ids);
        Assert.Equal(FixtureFile.String(entry, "decoded"), _tokenizer.Decode([.. ids]));
    }

    [Fact]
    public void Loads_in_reasonable_time() =>
        Assert.True(fixture.LoadTime < TimeSpan.FromSeconds(10), $"Loading the Qwen3 tokenizer took {fixture.LoadTime.TotalMilliseconds:F0} ms.");
}
