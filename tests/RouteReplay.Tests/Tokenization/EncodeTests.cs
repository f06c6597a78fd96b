using RouteReplay.Model.Tokenization;

namespace RouteReplay.Tests.Tokenization;

[Collection(Qwen3TokenizerCollection.Name)]
public sealed class EncodeTests(Qwen3TokenizerFixture fixture)
{
    private const string Expected = "tokenizer_expected.json";
    private const string NfcExpected = "tokenizer_nfc_expected.json";

    private readonly TextTokenizer _tokenizer = fixture.Tokenizer;

    public static TheoryData<int> Cases => FixtureFile.Indexes(Expected);

    public static TheoryData<int> NfcCases => FixtureFile.Indexes(NfcExpected);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Encodes_like_hugging_face(int index)
    {
        var entry = FixtureFile.Entry(Expected, index);
        var text = FixtureFile.String(entry, "text");

        Assert.Equal(FixtureFile.Ids(entry.GetProperty("ids")), _tokenizer.Encode(text));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Decoding_the_encoding_gives_the_text_back(int index)
    {
        var text = FixtureFile.String(FixtureFile.Entry(Expected, index), "text");

        Assert.Equal(text, _tokenizer.Decode([.. _tokenizer.Encode(text)]));
    }

    [Theory]
    [MemberData(nameof(NfcCases))]
    public void Normalizes_to_nfc_between_added_tokens_like_hugging_face(int index)
    {
        var entry = FixtureFile.Entry(NfcExpected, index);
        var ids = _tokenizer.Encode(FixtureFile.String(entry, "text"));

        Assert.Equal(FixtureFile.Ids(entry.GetProperty("ids")), ids);
        Assert.Equal(FixtureFile.String(entry, "decoded"), _tokenizer.Decode([.. ids]));
    }

    [Fact]
    public void Loads_in_reasonable_time() =>
        Assert.True(fixture.LoadTime < TimeSpan.FromSeconds(10), $"Loading the Qwen3 tokenizer took {fixture.LoadTime.TotalMilliseconds:F0} ms.");
}
