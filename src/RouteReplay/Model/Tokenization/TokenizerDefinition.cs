using System.Text.Json;

namespace RouteReplay.Model.Tokenization;

/// <summary>What a byte-level BPE tokenizer.json (Hugging Face <c>tokenizers</c> format) defines.</summary>
/// <param name="Vocabulary">BPE tokens, in the byte-level alphabet, by id.</param>
/// <param name="Merges">BPE merges by priority, each as "left right".</param>
/// <param name="AddedTokens">Tokens matched whole in the raw text.</param>
/// <param name="SplitPattern">The pre-tokenizer's split regular expression.</param>
/// <param name="NormalizesToNfc">Whether text is normalized to Unicode NFC before BPE.</param>
internal sealed record TokenizerDefinition(
    Dictionary<string, int> Vocabulary,
    List<string> Merges,
    IReadOnlyList<AddedToken> AddedTokens,
    string SplitPattern,
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
            ReadSplitPattern(file, root),
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

    private static string ReadSplitPattern(TokenizerJsonReader file, JsonElement root)
    {
        var preTokenizer = file.Required(root, "pre_tokenizer", JsonValueKind.Object, "pre_tokenizer");
        var steps = file.Optional(preTokenizer, "pretokenizers") is { ValueKind: JsonValueKind.Array } sequence
            ? sequence.EnumerateArray().ToList()
            : [preTokenizer];
        foreach (var step in steps)
        {
            if (file.OptionalString(step, "type") == "Split"
                && file.Optional(step, "pattern") is { } pattern
                && file.Optional(pattern, "Regex") is { ValueKind: JsonValueKind.String } regex)
            {
                return regex.GetString()!;
            }
        }
        throw file.Invalid("'pre_tokenizer' has no Split step with a Regex pattern.");
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

    private static bool ReadNormalizesToNfc(TokenizerJsonReader file, JsonElement root)
    {
        if (file.Optional(root, "normalizer") is not { } normalizer)
        {
            return false;
        }
        var type = file.OptionalString(normalizer, "type");
        return type == "NFC" ? true : throw file.Invalid($"normalizer '{type}' is not supported (only NFC or none).");
    }
}
