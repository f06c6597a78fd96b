using System.Buffers;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace RouteReplay.Model.Tokenization;

/// <summary>
/// A byte-level BPE tokenizer loaded from a Hugging Face model folder (tokenizer.json and tokenizer_config.json),
/// giving the same ids as Hugging Face <c>tokenizers</c> with <c>add_special_tokens=False</c>, plus the Qwen3 chat
/// template. Safe to share between threads.
/// </summary>
public sealed class TextTokenizer
{
    private readonly BpeTokenizer _bpe;
    private readonly AddedTokenSplitter? _nfcSegments;
    private readonly TokenByteTable _tokenBytes;
    private readonly IReadOnlyDictionary<string, int> _vocabulary;
    private readonly Dictionary<string, int> _addedTokens;
    private readonly string? _chatTemplate;
    private readonly string _directory;

    private TextTokenizer(
        BpeTokenizer bpe,
        AddedTokenSplitter? nfcSegments,
        TokenByteTable tokenBytes,
        IReadOnlyDictionary<string, int> vocabulary,
        Dictionary<string, int> addedTokens,
        string? chatTemplate,
        IReadOnlyList<int> eosTokenIds,
        string directory)
    {
        _bpe = bpe;
        _nfcSegments = nfcSegments;
        _tokenBytes = tokenBytes;
        _vocabulary = vocabulary;
        _addedTokens = addedTokens;
        _chatTemplate = chatTemplate;
        _directory = directory;
        EosTokenIds = eosTokenIds;
    }

    /// <summary>How many token ids the tokenizer knows (largest id + 1; 151,669 for Qwen3). Ids at or above it must never be sampled.</summary>
    public int TokenCount => _tokenBytes.Count;

    /// <summary>The end-of-sequence token ids (tokenizer_config.json's <c>eos_token</c>); empty when the file names none.</summary>
    public IReadOnlyList<int> EosTokenIds { get; }

    /// <summary>Loads the tokenizer of a model folder.</summary>
    /// <param name="directory">A folder with tokenizer.json and tokenizer_config.json.</param>
    /// <exception cref="InvalidDataException">A file is missing or malformed; the message names it.</exception>
    public static TextTokenizer Load(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        var definition = TokenizerDefinition.Read(directory);
        var config = TokenizerConfig.Read(directory);
        var addedTokens = definition.AddedTokens.ToDictionary(token => token.Content, token => token.Id, StringComparer.Ordinal);
        var bpe = CreateBpe(definition, addedTokens, Path.Combine(directory, TokenizerDefinition.FileName));
        var eosTokenIds = EosIds(config, addedTokens, definition.Vocabulary, Path.Combine(directory, TokenizerConfig.FileName));
        return new TextTokenizer(
            bpe,
            definition.NormalizesToNfc ? new AddedTokenSplitter(addedTokens) : null,
            TokenByteTable.Build(definition.Vocabulary, definition.AddedTokens),
            definition.Vocabulary,
            addedTokens,
            config.ChatTemplate,
            eosTokenIds,
            directory);
    }

    /// <summary>
    /// Encodes text to token ids; added tokens written in the text (e.g. <c>&lt;|im_start|&gt;</c>) become their ids,
    /// and the text between them is normalized to NFC first when tokenizer.json asks for it.
    /// </summary>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length == 0)
        {
            return [];
        }
        if (_nfcSegments is null || NfcNormalizer.IsNormalized(text))
        {
            return _bpe.EncodeToIds(text);
        }
        var ids = new List<int>();
        foreach (var (segment, addedTokenId) in _nfcSegments.Split(text))
        {
            if (addedTokenId is { } id)
            {
                ids.Add(id);
            }
            else
            {
                ids.AddRange(_bpe.EncodeToIds(NfcNormalizer.Normalize(segment)));
            }
        }
        return ids;
    }

    /// <summary>Decodes token ids to text; byte sequences that are not valid UTF-8 become U+FFFD.</summary>
    /// <param name="ids">The token ids.</param>
    /// <param name="skipSpecialTokens">Leave out added tokens marked special (e.g. <c>&lt;|im_end|&gt;</c>, not <c>&lt;think&gt;</c>).</param>
    /// <exception cref="ArgumentOutOfRangeException">An id the tokenizer does not know.</exception>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var bytes = new ArrayBufferWriter<byte>(Math.Max(16, ids.Length * 4));
        foreach (var id in ids)
        {
            if (!(skipSpecialTokens && IsSpecial(id)))
            {
                bytes.Write(TokenBytes(id));
            }
        }
        return Encoding.UTF8.GetString(bytes.WrittenSpan);
    }

    /// <summary>The id of a token given as its vocabulary string (byte-level form, e.g. "Ġthe") or an added token's text; null when unknown.</summary>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _addedTokens.TryGetValue(token, out var added) ? added
            : _vocabulary.TryGetValue(token, out var id) ? id
            : null;
    }

    /// <summary>
    /// Renders a conversation with the model's chat template, as Hugging Face <c>apply_chat_template(messages,
    /// tokenize=False, ...)</c> does. Implements the Qwen3 template (ChatML with <c>&lt;think&gt;</c> reasoning) in
    /// C#: reasoning is kept only for assistant turns after the last user query, a leading system message opens the
    /// text, and <paramref name="enableThinking"/> = false appends an empty think block after the generation prompt.
    /// </summary>
    /// <exception cref="ArgumentException">No messages.</exception>
    /// <exception cref="InvalidOperationException">tokenizer_config.json has no chat template.</exception>
    /// <exception cref="NotSupportedException">The chat template is not Qwen3's, or a message has the tool role.</exception>
    public string ApplyChatTemplate(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, bool enableThinking = true)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (messages.Count == 0)
        {
            throw new ArgumentException("A chat needs at least one message.", nameof(messages));
        }
        var configPath = Path.Combine(_directory, TokenizerConfig.FileName);
        if (_chatTemplate is null)
        {
            throw new InvalidOperationException($"'{configPath}' has no chat_template, so chat messages cannot be rendered.");
        }
        if (!Qwen3ChatTemplate.Recognizes(_chatTemplate))
        {
            throw new NotSupportedException($"The chat_template in '{configPath}' is not the Qwen3 template, the only one RouteReplay renders.");
        }
        return Qwen3ChatTemplate.Render(messages, addGenerationPrompt, enableThinking);
    }

    /// <summary>The raw bytes of one token (byte-level BPE tokens can end inside a UTF-8 character).</summary>
    internal ReadOnlySpan<byte> TokenBytes(int id) =>
        _tokenBytes.Contains(id)
            ? _tokenBytes[id]
            : throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id {id} is not in the vocabulary (0 to {TokenCount - 1}).");

    /// <summary>Whether the id is an added token marked special.</summary>
    internal bool IsSpecial(int id) => _tokenBytes.Contains(id) && _tokenBytes.IsSpecial(id);

    private static BpeTokenizer CreateBpe(TokenizerDefinition definition, Dictionary<string, int> addedTokens, string path)
    {
        var splits = new List<Regex>(definition.SplitPatterns.Count);
        foreach (var pattern in definition.SplitPatterns)
        {
            try
            {
                splits.Add(new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant));
            }
            catch (ArgumentException e)
            {
                throw TokenizerFileError.Invalid(path, $"the pre_tokenizer Split pattern '{pattern}' is not a valid regular expression ({e.Message})", e);
            }
        }
        try
        {
            return BpeTokenizer.Create(new BpeOptions(definition.Vocabulary)
            {
                Merges = definition.Merges,
                SpecialTokens = addedTokens,
                ByteLevel = true,
                PreTokenizer = new SequentialSplitPreTokenizer(splits, addedTokens),
            });
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw TokenizerFileError.Invalid(path, e.Message, e);
        }
    }

    private static List<int> EosIds(TokenizerConfig config, Dictionary<string, int> addedTokens, IReadOnlyDictionary<string, int> vocabulary, string path)
    {
        if (config.EosToken is not { } eos)
        {
            return [];
        }
        return addedTokens.TryGetValue(eos, out var id) || vocabulary.TryGetValue(eos, out id)
            ? [id]
            : throw TokenizerFileError.Invalid(path, $"eos_token '{eos}' is not a token of tokenizer.json.");
    }
}
