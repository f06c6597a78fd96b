using RouteReplay.Model.Tokenization;

namespace RouteReplay.Tests.Tokenization;

[Collection(Qwen3TokenizerCollection.Name)]
public sealed class VocabularyTests(Qwen3TokenizerFixture fixture)
{
    private const string Expected = "decode_expected.json";

    private readonly TextTokenizer _tokenizer = fixture.Tokenizer;

    public static TheoryData<int> DecodeCases => FixtureFile.Indexes(Expected);

    [Theory]
    [MemberData(nameof(DecodeCases))]
    public void Decodes_like_hugging_face(int index)
    {
        var entry = FixtureFile.Entry(Expected, index);
        var skipSpecialTokens = entry.GetProperty("skip_special_tokens").GetBoolean();

        Assert.Equal(FixtureFile.String(entry, "text"), _tokenizer.Decode(FixtureFile.Ids(entry.GetProperty("ids")), skipSpecialTokens));
    }

    [Fact]
    public void Counts_vocabulary_and_added_tokens() => Assert.Equal(151_669, _tokenizer.TokenCount);

    [Fact]
    public void Ends_sequences_at_im_end() => Assert.Equal([151_645], _tokenizer.EosTokenIds);

    [Theory]
    [InlineData("<|im_start|>", 151_644)]
    [InlineData("</think>", 151_668)]
    [InlineData("Hello", 9_707)]
    [InlineData("Ġthe", 279)]
    public void Finds_token_ids(string token, int id) => Assert.Equal(id, _tokenizer.TokenToId(token));

    [Fact]
    public void Has_no_id_for_unknown_token() => Assert.Null(_tokenizer.TokenToId("not a single token"));

    [Theory]
    [InlineData(-1)]
    [InlineData(151_669)]
    [InlineData(151_935)]
    public void Rejects_ids_outside_the_vocabulary(int id)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => _tokenizer.Decode([9707, id]));

        Assert.Contains(id.ToString(System.Globalization.CultureInfo.InvariantCulture), error.Message, StringComparison.Ordinal);
    }
}
