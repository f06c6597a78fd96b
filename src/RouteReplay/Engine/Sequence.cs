using System.Text;
using RouteReplay.Cache;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.Engine;

internal enum SequenceStatus
{
    Waiting,
    Running,
    Finished,
}

/// <summary>Where a waiting sequence stands with the block store: not asked yet, lookup in flight, or asked.</summary>
internal enum StoreLookup
{
    NotTried,
    Loading,
    Done,
}

/// <summary>
/// One choice of a request as the scheduler sees it: its tokens, how many of them have KV in the cache
/// (<see cref="ComputedTokens"/>), its block table, and the chain key of its last block committed to the prefix index.
/// </summary>
internal sealed class Sequence
{
    private readonly List<int> _tokens;
    private readonly StreamingDetokenizer _detokenizer;
    private readonly StringBuilder _text = new();
    private int _emitted;

    public Sequence(RequestState request, int choice, int maxTokens, TextTokenizer tokenizer, BlockKey rootKey)
    {
        Request = request;
        Choice = choice;
        _tokens = new List<int>(request.Request.PromptTokenIds.Count + maxTokens);
        _tokens.AddRange(request.Request.PromptTokenIds);
        PromptLength = _tokens.Count;
        MaxTokens = maxTokens;
        var seed = request.Request.Sampling.Seed;
        Random = SeededRandom.FromSeedOrEntropy(seed.HasValue ? seed.Value + (ulong)choice : null);
        _detokenizer = new StreamingDetokenizer(tokenizer, skipSpecialTokens: true);
        RootKey = rootKey;
        LastCommittedKey = rootKey;
        Logprobs = request.Request.Logprobs.HasValue ? [] : null;
    }

    public RequestState Request { get; }

    public int Choice { get; }

    public SequenceStatus Status { get; set; } = SequenceStatus.Waiting;

    public int PromptLength { get; }

    public int MaxTokens { get; }

    public int TokenCount => _tokens.Count;

    public int OutputCount => _tokens.Count - PromptLength;

    public IReadOnlyList<int> Tokens => _tokens;

    /// <summary>Tokens whose KV (and every channel row) is in the cache: positions <c>[0, ComputedTokens)</c>.</summary>
    public int ComputedTokens { get; set; }

    /// <summary>Prompt tokens served by prefix-cache hits at admission.</summary>
    public int CachedTokens { get; set; }

    public List<int> BlockTable { get; } = [];

    public int CommittedBlocks { get; set; }

    public BlockKey RootKey { get; }

    /// <summary>Host blocks holding this sequence's payloads while it is swapped out, in block-table order.</summary>
    public List<int> HostBlocks { get; } = [];

    public bool IsSwapped => HostBlocks.Count > 0;

    /// <summary>The block store is asked at most once per sequence, before its first admission.</summary>
    public StoreLookup StoreLookup { get; set; }

    /// <summary>
    /// Routing rows of positions <c>[0, SavedRoutingRows)</c>, kept when the sequence was preempted by recompute and
    /// replayed as forced routing while those positions are computed again, so its rows never change once produced.
    /// </summary>
    public byte[]? SavedRouting { get; set; }

    public int SavedRoutingRows { get; set; }

    public BlockKey LastCommittedKey { get; set; }

    public SeededRandom Random;

    public FinishReason? FinishReason { get; set; }

    public List<TokenLogprob>? Logprobs { get; }

    /// <summary>Rows of the auxiliary channels, gathered beside routing when the sequence finished.</summary>
    public Dictionary<string, byte[]>? AuxiliaryRows { get; set; }

    public string Text => _text.ToString();

    /// <summary>True once the text reached one of the request's stop strings (the text was cut before it, unless kept).</summary>
    public bool StoppedByString { get; private set; }

    /// <summary>The stop string the text reached, once <see cref="StoppedByString"/>.</summary>
    public string? MatchedStop { get; private set; }

    /// <summary>
    /// Appends a sampled token and returns the text that may be shown now: never part of a UTF-8 character, never half
    /// of a UTF-16 surrogate pair. With stop strings, the last characters that could begin one are held back until the
    /// next token or the end decides. <paramref name="withText"/> false keeps the token out of the text (a stop token
    /// whose text is trimmed).
    /// </summary>
    public string Append(int token, bool withText = true)
    {
        _tokens.Add(token);
        if (withText)
        {
            _text.Append(_detokenizer.Append(token));
        }
        var sampling = Request.Request.Sampling;
        if (sampling.Stop is not { } stops)
        {
            return TakeUnemitted(_text.Length);
        }
        var longest = 0;
        foreach (var stop in stops)
        {
            longest = Math.Max(longest, stop.Length);
        }
        var searchFrom = Math.Max(0, _emitted - longest);
        var text = _text.ToString(searchFrom, _text.Length - searchFrom);
        var cut = -1;
        foreach (var stop in stops)
        {
            var at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut))
            {
                cut = at;
                MatchedStop = stop;
            }
        }
        if (cut >= 0)
        {
            if (!sampling.IncludeStopStringInOutput)
            {
                _text.Length = searchFrom + cut;
            }
            StoppedByString = true;
            return TakeUnemitted(_text.Length);
        }
        return TakeUnemitted(Math.Max(_emitted, _text.Length - (longest - 1)));
    }

    /// <summary>Returns everything not yet shown, once the sequence has finished or is aborted.</summary>
    public string FlushText()
    {
        if (!StoppedByString || Request.Request.Sampling.IncludeStopStringInOutput)
        {
            _text.Append(_detokenizer.Flush());
        }
        return TakeUnemitted(_text.Length);
    }

    /// <summary>Emits the text up to <paramref name="upTo"/>, or one character less where that would split a surrogate pair.</summary>
    private string TakeUnemitted(int upTo)
    {
        if (upTo > _emitted && upTo < _text.Length && char.IsHighSurrogate(_text[upTo - 1]) && char.IsLowSurrogate(_text[upTo]))
        {
            upTo--;
        }
        var delta = _text.ToString(_emitted, upTo - _emitted);
        _emitted = upTo;
        return delta;
    }

    public IReadOnlyList<int> OutputTokens() => _tokens.GetRange(PromptLength, OutputCount);
}

/// <summary>A request in flight: its choices and what the caller is told as they progress.</summary>
internal sealed class RequestState(EngineRequest request, IRequestSink sink)
{
    public EngineRequest Request { get; } = request;

    public IRequestSink Sink { get; } = sink;

    public Sequence[] Choices { get; set; } = [];

    public ChoiceResult?[] Results { get; } = new ChoiceResult?[request.N];

    public int Unfinished { get; set; } = request.N;

    public Exception? Error { get; set; }
}
