using RouteReplay.Model.Tokenization;

namespace RouteReplay.Tests.Tokenization;

public sealed class TokenizerLoadErrorTests : IDisposable
{
    private const string ValidConfig = """{"eos_token": "<|im_end|>"}""";
    private const string TinyTokenizer = """
        {
          "added_tokens": [{"id": 3, "content": "<|im_end|>", "special": true}],
          "normalizer": null,
          "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+|\\S+"}, "behavior": "Isolated"},
          "decoder": {"type": "ByteLevel"},
          "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}
        }
        """;

    private readonly string _directory = Directory.CreateTempSubdirectory("routereplay-tokenizer-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void Loads_a_minimal_tokenizer()
    {
        Write(TinyTokenizer, ValidConfig);

        var tokenizer = TextTokenizer.Load(_directory);

        Assert.Equal([2, 0, 3], tokenizer.Encode("aba<|im_end|>"));
        Assert.Equal(4, tokenizer.TokenCount);
        Assert.Equal([3], tokenizer.EosTokenIds);
    }

    [Fact]
    public void Missing_tokenizer_json_is_named()
    {
        File.WriteAllText(Path.Combine(_directory, "tokenizer_config.json"), ValidConfig);

        AssertNamesFile("tokenizer.json", () => TextTokenizer.Load(_directory));
    }

    [Fact]
    public void Missing_tokenizer_config_is_named()
    {
        File.WriteAllText(Path.Combine(_directory, "tokenizer.json"), TinyTokenizer);

        AssertNamesFile("tokenizer_config.json", () => TextTokenizer.Load(_directory));
    }

    [Fact]
    public void Missing_folder_is_named() =>
        AssertNamesFile("tokenizer.json", () => TextTokenizer.Load(Path.Combine(_directory, "absent")));

    [Theory]
    [InlineData("{\"model\": ")]
    [InlineData("not json")]
    [InlineData("[]")]
    [InlineData("""{"model": {"type": "Unigram", "vocab": []}}""")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "decoder": {"type": "ByteLevel"}}""")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "decoder": {"type": "Metaspace"}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "."}}}""")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}, "decoder": {"type": "ByteLevel"}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "."}}}""")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "decoder": {"type": "ByteLevel"}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(("}}}""")]
    [InlineData("""{"normalizer": {"type": "NFKC"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "decoder": {"type": "ByteLevel"}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "."}}}""")]
    public void Invalid_tokenizer_json_is_named(string json)
    {
        Write(json, ValidConfig);

        AssertNamesFile("tokenizer.json", () => TextTokenizer.Load(_directory));
    }

    [Fact]
    public void A_byte_level_pre_tokenizer_with_use_regex_splits_as_gpt2_does()
    {
        Write(
            TinyTokenizer.Replace(
                """{"type": "Split", "pattern": {"Regex": "\\s+|\\S+"}, "behavior": "Isolated"}""",
                """{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}""",
                StringComparison.Ordinal),
            ValidConfig);

        var tokenizer = TextTokenizer.Load(_directory);

        // GPT-2's regex keeps a letter run whole ("aba" -> "ab" + "a"); a run of "ab"s is one piece, merged pairwise.
        Assert.Equal([2, 0, 3], tokenizer.Encode("aba<|im_end|>"));
        Assert.Equal([2, 2], tokenizer.Encode("abab"));
    }

    [Theory]
    [InlineData("""{"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, {"type": "ByteLevel", "use_regex": true}]}""", "Digits")]
    [InlineData("""{"type": "ByteLevel", "add_prefix_space": true}""", "prefix space")]
    [InlineData("""{"type": "Split", "pattern": {"Regex": "\\s"}, "behavior": "Removed"}""", "Isolated")]
    [InlineData("""{"type": "Metaspace", "replacement": "_"}""", "Metaspace")]
    public void A_pre_tokenizer_that_would_split_differently_is_refused(string preTokenizer, string named)
    {
        Write(
            TinyTokenizer.Replace(
                """{"type": "Split", "pattern": {"Regex": "\\s+|\\S+"}, "behavior": "Isolated"}""",
                preTokenizer,
                StringComparison.Ordinal),
            ValidConfig);

        var error = Assert.ThrowsAny<Exception>(() => TextTokenizer.Load(_directory));
        Assert.Contains("tokenizer.json", error.Message, StringComparison.Ordinal);
        Assert.Contains(named, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{")]
    [InlineData("""{"eos_token": 7}""")]
    [InlineData("""{"eos_token": "<|not_a_token|>"}""")]
    public void Invalid_tokenizer_config_is_named(string json)
    {
        Write(TinyTokenizer, json);

        AssertNamesFile("tokenizer_config.json", () => TextTokenizer.Load(_directory));
    }

    [Fact]
    public void Eos_token_may_be_an_object()
    {
        Write(TinyTokenizer, """{"eos_token": {"content": "<|im_end|>", "special": true}}""");

        Assert.Equal([3], TextTokenizer.Load(_directory).EosTokenIds);
    }

    [Fact]
    public void Chat_without_a_template_is_refused_on_use()
    {
        Write(TinyTokenizer, ValidConfig);
        var tokenizer = TextTokenizer.Load(_directory);

        var error = Assert.Throws<InvalidOperationException>(() => tokenizer.ApplyChatTemplate([new("user", "hi")]));
        Assert.Contains("chat_template", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Chat_with_another_template_is_refused_on_use()
    {
        Write(TinyTokenizer, """{"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}""");
        var tokenizer = TextTokenizer.Load(_directory);

        Assert.Throws<NotSupportedException>(() => tokenizer.ApplyChatTemplate([new("user", "hi")]));
    }

    private void Write(string tokenizerJson, string configJson)
    {
        File.WriteAllText(Path.Combine(_directory, "tokenizer.json"), tokenizerJson);
        File.WriteAllText(Path.Combine(_directory, "tokenizer_config.json"), configJson);
    }

    private static void AssertNamesFile(string fileName, Action load)
    {
        var error = Assert.Throws<InvalidDataException>(load);
        Assert.Contains(fileName, error.Message, StringComparison.Ordinal);
    }
}
