using System.Text;
using RouteReplay.Cache;
using RouteReplay.Model;

namespace RouteReplay.Engine;

internal enum SequenceStatus
{
    Waiting,
    Running,
    Finished,
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

    public BlockKey LastCommittedKey { get; set; }

    public SeededRandom Random;

    public FinishReason? FinishReason { get; set; }

    public List<TokenLogprob>? Logprobs { get; }

    /// <summary>Rows of the auxiliary channels, gathered beside routing when the sequence finished.</summary>
    public Dictionary<string, byte[]>? AuxiliaryRows { get; set; }

    public string Text => _text.ToString();

    /// <summary>Appends a sampled token and returns the text it completes (UTF-8 safe).</summary>
    public string Append(int token)
    {
        _tokens.Add(token);
        var delta = _detokenizer.Append(token);
        _text.Append(delta);
        return delta;
    }

    public string FlushText()
    {
        var rest = _detokenizer.Flush();
        _text.Append(rest);
        return rest;
    }

    public IReadOnlyList<int> OutputTokens() => _tokens.GetRange(PromptLength, OutputCount);
}

/// <summary>A request in flight: its choices and what the caller is told as they progress.</summary>
internal sealed class RequestState(EngineRequest request)
{
    public EngineRequest Request { get; } = request;

    public Sequence[] Choices { get; set; } = [];

    public ChoiceResult?[] Results { get; } = new ChoiceResult?[request.N];

    public int Unfinished { get; set; } = request.N;

    public Exception? Error { get; set; }
}
