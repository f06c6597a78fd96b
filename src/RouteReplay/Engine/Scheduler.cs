using System.Runtime.InteropServices;
using RouteReplay.Cache;

namespace RouteReplay.Engine;

/// <summary>A sequence and how many of its tokens the step computes, starting at its <see cref="Sequence.ComputedTokens"/>.</summary>
internal readonly record struct ScheduledChunk(Sequence Sequence, int Tokens);

/// <summary>
/// Continuous batching, first come first served, within <c>max_num_seqs</c> and <c>max_num_batched_tokens</c>.
/// Running sequences are served first (a decode or the next prefill chunk each), then waiting ones are admitted in
/// arrival order while the step has room. Admission reserves every block the sequence can ever need, so a running
/// sequence always gets its next block and the engine never deadlocks; a sequence that cannot be reserved waits, and
/// so does everything behind it.
/// </summary>
internal sealed class Scheduler
{
    private readonly EngineOptions _options;
    private readonly BlockPool _pool;
    private readonly LinkedList<Sequence> _waiting = new();
    private readonly List<Sequence> _running = [];
    private readonly List<ScheduledChunk> _scheduled = [];
    private readonly List<int> _hits = [];
    private int[] _tokenScratch = new int[256];

    public Scheduler(EngineOptions options, BlockPool pool)
    {
        _options = options;
        _pool = pool;
    }

    public int WaitingCount => _waiting.Count;

    /// <summary>Prompt tokens served by prefix-cache hits at admission, since the start.</summary>
    public long PrefixHitTokens { get; private set; }

    public int RunningCount => _running.Count;

    public bool HasWork => _waiting.Count > 0 || _running.Count > 0;

    public void Enqueue(Sequence sequence) => _waiting.AddLast(sequence);

    /// <summary>Blocks a sequence may ever hold: its prompt plus every token it may generate.</summary>
    public int LifetimeBlocks(Sequence sequence) => _options.BlocksFor(sequence.PromptLength + sequence.MaxTokens);

    public IReadOnlyList<ScheduledChunk> Schedule()
    {
        _scheduled.Clear();
        var budget = _options.MaxNumBatchedTokens;
        foreach (var sequence in _running)
        {
            if (budget == 0)
            {
                break;
            }
            budget -= ScheduleChunk(sequence, budget);
        }
        while (budget > 0 && _waiting.First is { } node && _running.Count < _options.MaxNumSeqs && TryAdmit(node.Value))
        {
            _waiting.RemoveFirst();
            budget -= ScheduleChunk(node.Value, budget);
        }
        return _scheduled;
    }

    /// <summary>Removes a finished or aborted sequence and releases its blocks, last block first.</summary>
    public void Remove(Sequence sequence)
    {
        if (sequence.Status == SequenceStatus.Waiting)
        {
            _waiting.Remove(sequence);
        }
        else
        {
            _running.Remove(sequence);
        }
        _pool.ReleaseSequence(CollectionsMarshal.AsSpan(sequence.BlockTable));
        sequence.BlockTable.Clear();
        sequence.Status = SequenceStatus.Finished;
    }

    private int ScheduleChunk(Sequence sequence, int budget)
    {
        var tokens = Math.Min(sequence.TokenCount - sequence.ComputedTokens, budget);
        if (tokens <= 0)
        {
            return 0;
        }
        var needed = _options.BlocksFor(sequence.ComputedTokens + tokens) - sequence.BlockTable.Count;
        for (var i = 0; i < needed; i++)
        {
            sequence.BlockTable.Add(_pool.Allocate());
        }
        _scheduled.Add(new ScheduledChunk(sequence, tokens));
        return tokens;
    }

    private bool TryAdmit(Sequence sequence)
    {
        if (sequence.Choice > 0 && _pool.PrefixCachingEnabled && !FirstChoiceHasComputedPrompt(sequence))
        {
            return false;
        }
        var reserved = 0;
        foreach (var running in _running)
        {
            reserved += LifetimeBlocks(running) - running.BlockTable.Count;
        }
        var key = TakePrefixHits(sequence);
        if (_pool.FreeBlockCount - reserved < LifetimeBlocks(sequence) - _hits.Count)
        {
            _pool.ReleaseSequence(CollectionsMarshal.AsSpan(_hits));
            return false;
        }
        sequence.BlockTable.AddRange(_hits);
        sequence.CommittedBlocks = _hits.Count;
        sequence.LastCommittedKey = key;
        sequence.ComputedTokens = sequence.CachedTokens = _hits.Count * _options.BlockSize;
        PrefixHitTokens += sequence.CachedTokens;
        sequence.Status = SequenceStatus.Running;
        _running.Add(sequence);
        return true;
    }

    private static bool FirstChoiceHasComputedPrompt(Sequence sequence)
    {
        var first = sequence.Request.Choices[0];
        return first.Status == SequenceStatus.Finished || first.ComputedTokens >= first.PromptLength;
    }

    /// <summary>
    /// Takes references on the cached blocks that hold the prompt's leading full blocks, stopping at the first miss
    /// and never covering the block of the last prompt token (its logits are needed, and shared blocks are never
    /// written). Returns the chain key of the last hit.
    /// </summary>
    private BlockKey TakePrefixHits(Sequence sequence)
    {
        _hits.Clear();
        var key = sequence.LastCommittedKey;
        if (!_pool.PrefixCachingEnabled)
        {
            return key;
        }
        var blockSize = _options.BlockSize;
        var candidates = (sequence.PromptLength - 1) / blockSize;
        if (_tokenScratch.Length < blockSize)
        {
            _tokenScratch = new int[blockSize];
        }
        var tokens = _tokenScratch.AsSpan(0, blockSize);
        for (var b = 0; b < candidates; b++)
        {
            for (var i = 0; i < blockSize; i++)
            {
                tokens[i] = sequence.Tokens[(b * blockSize) + i];
            }
            var next = BlockKey.Chain(key, tokens);
            if (!_pool.TryHit(next, key, tokens, out var block))
            {
                break;
            }
            _hits.Add(block);
            key = next;
        }
        return key;
    }
}
