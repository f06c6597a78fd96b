using RouteReplay.Backends;
using RouteReplay.Routing;

namespace RouteReplay.Engine;

/// <summary>
/// Runs one request at a time on a backend: the prompt in one forward, then one token per forward. Blocks are used in
/// order, so position <c>p</c> lives in slot <c>p</c>. The reference path every batched lifecycle is compared with.
/// </summary>
public sealed class SingleSequenceGenerator
{
    private readonly IModelBackend _backend;
    private readonly int _tokenLimit;
    private readonly IReadOnlySet<int> _eosTokenIds;
    private readonly ForwardBatch _batch;
    private readonly int[] _blockTable;
    private readonly Sampler _sampler;

    /// <param name="tokenLimit">Ids at or above this (the tokenizer's token count) are never sampled.</param>
    public SingleSequenceGenerator(IModelBackend backend, int tokenLimit, IEnumerable<int> eosTokenIds)
    {
        _backend = backend;
        _tokenLimit = tokenLimit;
        _eosTokenIds = eosTokenIds.ToHashSet();
        MaxModelLength = backend.NumBlocks * backend.BlockSize;
        _batch = new ForwardBatch(MaxModelLength, 1, backend.NumBlocks, backend.RoutingFormat, backend.Config.VocabSize);
        _blockTable = Enumerable.Range(0, backend.NumBlocks).ToArray();
        _sampler = new Sampler(backend.Config.VocabSize);
    }

    /// <summary>The most tokens (prompt plus output) one request can hold: the whole KV cache.</summary>
    public int MaxModelLength { get; }

    public GenerationResult Generate(IReadOnlyList<int> prompt, SamplingParams sampling, Action<int>? onToken = null)
    {
        sampling.Validate();
        if (prompt.Count == 0)
        {
            throw new ArgumentException("the prompt has no tokens", nameof(prompt));
        }
        if (prompt.Count >= MaxModelLength)
        {
            throw new ArgumentException($"the prompt has {prompt.Count} tokens; the model length is {MaxModelLength}, which leaves no room to generate", nameof(prompt));
        }
        var format = _backend.RoutingFormat;
        var maxTokens = Math.Min(sampling.MaxTokens, MaxModelLength - prompt.Count);
        var routing = new byte[(prompt.Count + maxTokens - 1) * format.RowBytes];
        var output = new List<int>(maxTokens);
        var random = SeededRandom.FromSeedOrEntropy(sampling.Seed);
        var fed = 0;
        var finish = FinishReason.Length;
        while (true)
        {
            var feed = fed == 0 ? prompt.Count : 1;
            _batch.Clear();
            var sequence = _batch.AddSequence(_blockTable);
            for (var i = 0; i < feed; i++)
            {
                var position = fed + i;
                var token = position < prompt.Count ? prompt[position] : output[position - prompt.Count];
                _batch.AddToken(sequence, token, position, position, needsLogits: i == feed - 1);
            }
            _backend.Forward(_batch);
            _batch.Routing.AsSpan(0, feed * format.RowBytes).CopyTo(routing.AsSpan(fed * format.RowBytes));
            fed += feed;

            var next = _sampler.Sample(_batch.LogitRow(0), _tokenLimit, sampling, ref random);
            output.Add(next);
            onToken?.Invoke(next);
            if (!sampling.IgnoreEos && _eosTokenIds.Contains(next))
            {
                finish = FinishReason.Stop;
                break;
            }
            if (output.Count == maxTokens)
            {
                break;
            }
        }
        var rows = prompt.Count + output.Count - 1;
        var result = routing.AsSpan(0, rows * format.RowBytes).ToArray();
        if (format.ContainsSentinel(result))
        {
            throw new RoutingIntegrityException($"a routing row of the request still holds the unset sentinel");
        }
        return new GenerationResult(prompt.ToArray(), output, finish, format, result);
    }
}
