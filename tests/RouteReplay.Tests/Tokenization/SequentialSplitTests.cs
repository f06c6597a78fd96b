using System.Text.RegularExpressions;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.Tests.Tokenization;

/// <summary>
/// Pre-tokenizers made of several Isolated splits in turn (DeepSeek-V3's tokenizer.json), cut as Hugging Face
/// <c>tokenizers</c> cuts them: each split sees only the pieces the ones before it left, and keeps both its matches and
/// the text between them.
/// </summary>
public sealed class SequentialSplitTests : IDisposable
{
    // DeepSeek-V3's pre_tokenizer and (empty) normalizer, as its tokenizer.json has them.
    private const string DeepSeekPreTokenizer = """
        {"type": "Sequence", "pretokenizers": [
          {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": false},
          {"type": "Split", "pattern": {"Regex": "[一-龥぀-ゟ゠-ヿ]+"}, "behavior": "Isolated", "invert": false},
          {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
          {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]}
        """;

    private readonly string _directory = Directory.CreateTempSubdirectory("routereplay-split-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void Each_split_cuts_the_pieces_the_one_before_left_and_keeps_the_gaps()
    {
        // The example Hugging Face's own behavior gives: digits in runs of up to three, then letter runs with their space.
        var splitter = new SequentialSplitPreTokenizer([new Regex(@"\p{N}{1,3}"), new Regex(@" ?\p{L}+")], new Dictionary<string, int>());

        Assert.Equal(["ab", " ", "123", "40", " cd"], Pieces(splitter, "ab 12340 cd"));
    }

    [Fact]
    public void A_lookahead_sees_only_its_own_piece()
    {
        // "\s+(?!\S)" leaves the last space of a run to the next word within one text; once digits have cut the text,
        // the run before the digits ends its piece, so all of it matches.
        var splitter = new SequentialSplitPreTokenizer([new Regex(@"\p{N}{1,3}"), new Regex(@"\s+(?!\S)|\s+|\S+")], new Dictionary<string, int>());

        Assert.Equal(["a", "   ", "7"], Pieces(splitter, "a   7"));
        Assert.Equal(["a", "  ", " b"], Pieces(new SequentialSplitPreTokenizer([new Regex(@"\s+(?!\S)| ?\S+|\s+")], new Dictionary<string, int>()), "a   b"));
    }

    [Fact]
    public void Added_tokens_stay_whole_between_the_splits()
    {
        var splitter = new SequentialSplitPreTokenizer([new Regex(@"\p{N}{1,3}")], new Dictionary<string, int> { ["<|end|>"] = 9 });

        Assert.Equal(["x", "123", "4", "<|end|>", "56"], Pieces(splitter, "x1234<|end|>56"));
    }

    [Fact]
    public void DeepSeek_v3s_pre_tokenizer_loads_and_splits_digits_and_cjk_runs()
    {
        var vocabulary = new Dictionary<string, int>();
        foreach (var piece in new[] { "1", "2", "3", "4", "5", "6", "7", "12", "123", "45", "456", "w", "o", "r", "l", "d", "wo", "wor", "worl", "world" })
        {
            vocabulary[piece] = vocabulary.Count;
        }
        foreach (var ch in System.Text.Encoding.UTF8.GetBytes("你好").Select(ByteLevelAlphabet.ToChar))
        {
            vocabulary.TryAdd(ch.ToString(), vocabulary.Count);
        }
        var merges = new List<string> { "1 2", "12 3", "4 5", "45 6", "w o", "wo r", "wor l", "worl d" };
        File.WriteAllText(Path.Combine(_directory, "tokenizer.json"), $$"""
            {
              "added_tokens": [{"id": 100, "content": "<｜end▁of▁sentence｜>", "special": true}],
              "normalizer": {"type": "Sequence", "normalizers": []},
              "pre_tokenizer": {{DeepSeekPreTokenizer}},
              "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
              "model": {"type": "BPE", "vocab": {{System.Text.Json.JsonSerializer.Serialize(vocabulary)}}, "merges": {{System.Text.Json.JsonSerializer.Serialize(merges)}}}
            }
            """);
        File.WriteAllText(Path.Combine(_directory, "tokenizer_config.json"), """{"eos_token": "<｜end▁of▁sentence｜>"}""");

        var tokenizer = TextTokenizer.Load(_directory);

        // 1234567 -> 123 456 7 (digit runs of three), never 12 or 45.
        Assert.Equal([vocabulary["123"], vocabulary["456"], vocabulary["7"], 100], tokenizer.Encode("1234567<｜end▁of▁sentence｜>"));
        // A CJK run is its own piece: "world" after it merges whole.
        var ids = tokenizer.Encode("你好world");
        Assert.Equal(vocabulary["world"], ids[^1]);
        Assert.Equal("你好world", tokenizer.Decode(ids.ToArray()));
    }

    private static List<string> Pieces(SequentialSplitPreTokenizer splitter, string text) =>
        splitter.PreTokenize(text).Select(piece => text.Substring(piece.Offset, piece.Length)).ToList();
}
