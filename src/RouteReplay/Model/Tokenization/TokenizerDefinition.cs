using System.Text.Json;

namespace RouteReplay.Model.Tokenization;

/// <summary>What a byte-level BPE tokenizer.json (Hugging Face <c>tokenizers</c> format) defines.</summary>
/// <param name="Vocabulary">BPE tokens, in the byte-level alphabet, by id.</param>
/// <param name="Merges">BPE merges by priority, each as "left right".</param>
/// <param name="AddedTokens">Tokens matched whole in the raw text.</param>
/// <param name="SplitPatterns">The pre-tokenizer's split regular expressions, applied in turn.</param>
/// <param name="NormalizesToNfc">Whether text is normalized to Unicode NFC before BPE.</param>
internal sealed record TokenizerDefinition(
    Dictionary<string, int> Vocabulary,
    List<string> Merges,
    IReadOnlyList<AddedToken> AddedTokens,
    IReadOnlyList<string> SplitPatterns,
    bool NormalizesToNfc)
{
    public const string FileName = "tokenizer.json";

    public static TokenizerDefinition Read(string directory)
    {
        var file = new TokenizerJsonReader(Path.Combine(directory, FileName));
        using var document = file.Open();
        var root = document.RootElement;
        var model = file.Required(root, "model", JsonValueKind.Object, "model");
        var type = file.OptionalString(model, "type");
        if (type != "BPE")
        {
            throw file.Invalid($"'model.type' is '{type}'; only byte-level BPE tokenizers are supported.");
        }
        RequireByteLevelDecoder(file, root);
        return new TokenizerDefinition(
            ReadVocabulary(file, model),
            ReadMerges(file, model),
            ReadAddedTokens(file, root),
            ReadSplitPatterns(file, root),
            ReadNormalizesToNfc(file, root));
    }

    private static Dictionary<string, int> ReadVocabulary(TokenizerJsonReader file, JsonElement model)
    {
        var vocab = file.Required(model, "vocab", JsonValueKind.Object, "model.vocab");
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in vocab.EnumerateObject())
        {
            result[entry.Name] = entry.Value.ValueKind == JsonValueKind.Number && entry.Value.TryGetInt32(out var id) && id >= 0
                ? id
                : throw file.Invalid($"'model.vocab' entry '{entry.Name}' must be a non-negative integer id.");
        }
        return result;
    }

    private static List<string> ReadMerges(TokenizerJsonReader file, JsonElement model)
    {
        var merges = file.Required(model, "merges", JsonValueKind.Array, "model.merges");
        var result = new List<string>(merges.GetArrayLength());
        foreach (var merge in merges.EnumerateArray())
        {
            result.Add(merge.ValueKind switch
            {
                JsonValueKind.String => merge.GetString()!,
                JsonValueKind.Array when merge.GetArrayLength() == 2
                    && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String =>
                    $"{merge[0].GetString()} {merge[1].GetString()}",
                _ => throw file.Invalid($"'model.merges' entry {merge.GetRawText()} must be \"left right\" or [\"left\", \"right\"]."),
            });
        }
        return result;
    }

    private static List<AddedToken> ReadAddedTokens(TokenizerJsonReader file, JsonElement root)
    {
        var result = new List<AddedToken>();
        if (file.Optional(root, "added_tokens") is not { } added)
        {
            return result;
        }
        if (added.ValueKind != JsonValueKind.Array)
        {
            throw file.Invalid("'added_tokens' must be an array.");
        }
        foreach (var token in added.EnumerateArray())
        {
            var special = file.Optional(token, "special")?.ValueKind == JsonValueKind.True;
            var content = file.RequiredString(token, "content", "added_tokens[].content");
            if (content.Length == 0 || result.Any(other => other.Content == content))
            {
                throw file.Invalid($"'added_tokens' has an empty or repeated content '{content}'.");
            }
            result.Add(new AddedToken(file.RequiredTokenId(token, "id", "added_tokens[].id"), content, special));
        }
        return result;
    }

    /// <summary>GPT-2's pre-tokenization regex, which a ByteLevel pre-tokenizer with <c>use_regex</c> applies (OLMoE, GPT-NeoX).</summary>
    internal const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>
    /// The regexes that split text before BPE, in order: each <c>Split</c> step (isolating its matches), and the GPT-2
    /// pattern of a ByteLevel step with <c>use_regex</c>. Anything else (digit or punctuation steps, Metaspace, a
    /// prefix space, a Split that removes or inverts) would tokenize differently from the model's own tokenizer, so it
    /// is refused.
    /// </summary>
    private static List<string> ReadSplitPatterns(TokenizerJsonReader file, JsonElement root)
    {
        var preTokenizer = file.Required(root, "pre_tokenizer", JsonValueKind.Object, "pre_tokenizer");
        var steps = file.Optional(preTokenizer, "pretokenizers") is { ValueKind: JsonValueKind.Array } sequence
            ? sequence.EnumerateArray().ToList()
            : [preTokenizer];
        var patterns = new List<string>();
        foreach (var step in steps)
        {
            var type = file.OptionalString(step, "type");
            if (type == "Split")
            {
                if (file.Optional(step, "pattern") is not { } pattern
                    || file.Optional(pattern, "Regex") is not { ValueKind: JsonValueKind.String } regex)
                {
                    throw file.Invalid("'pre_tokenizer' has a Split step without a Regex pattern.");
                }
                if (file.OptionalString(step, "behavior") is { } behavior and not "Isolated" || file.Optional(step, "invert") is { ValueKind: JsonValueKind.True })
                {
                    throw file.Invalid("'pre_tokenizer' has a Split step that does not isolate its matches; only Isolated, not inverted, is supported.");
                }
                patterns.Add(regex.GetString()!);
            }
            else if (type == "ByteLevel")
            {
                if (file.Optional(step, "add_prefix_space") is { ValueKind: JsonValueKind.True })
                {
                    throw file.Invalid("'pre_tokenizer' adds a prefix space (ByteLevel add_prefix_space), which is not supported.");
                }
                if (file.Optional(step, "use_regex") is not { ValueKind: JsonValueKind.False })
                {
                    patterns.Add(Gpt2Pattern);
                }
            }
            else
            {
                throw file.Invalid($"'pre_tokenizer' step '{type}' is not supported (only Split regexes and ByteLevel).");
            }
        }
        return patterns.Count > 0
            ? patterns
            : throw file.Invalid("'pre_tokenizer' has no Split step with a Regex pattern (nor a ByteLevel step with use_regex).");
    }

    private static void RequireByteLevelDecoder(TokenizerJsonReader file, JsonElement root)
    {
        var decoder = file.Required(root, "decoder", JsonValueKind.Object, "decoder");
        var steps = file.Optional(decoder, "decoders") is { ValueKind: JsonValueKind.Array } sequence
            ? sequence.EnumerateArray().ToList()
            : [decoder];
        if (steps.Count != 1 || file.OptionalString(steps[0], "type") != "ByteLevel")
        {
            throw file.Invalid("'decoder' must be ByteLevel; only byte-level BPE tokenizers are supported.");
        }
    }

    /// <summary>NFC, or nothing: no normalizer, or a <c>Sequence</c> of NFC steps or of none (DeepSeek-V3's).</summary>
    private static bool ReadNormalizesToNfc(TokenizerJsonReader file, JsonElement root)
    {
        if (file.Optional(root, "normalizer") is not { ValueKind: JsonValueKind.Object } normalizer)
        {
            return false;
        }
        var steps = file.OptionalString(normalizer, "type") == "Sequence" && file.Optional(normalizer, "normalizers") is { ValueKind: JsonValueKind.Array } sequence
            ? sequence.EnumerateArray().ToList()
            : [normalizer];
        foreach (var step in steps)
        {
            var type = file.OptionalString(step, "type");
            if (type != "NFC")
            {
                throw file.Invalid($"normalizer '{type}' is not supported (only NFC or none).");
            }
        }
        return steps.Count > 0;
    }
}
