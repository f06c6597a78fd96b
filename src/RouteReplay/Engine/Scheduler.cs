using System.Runtime.InteropServices;
using RouteReplay.Cache;

namespace RouteReplay.Engine;

/// <summary>A sequence and how many of its tokens the step computes, starting at its <see cref="Sequence.ComputedTokens"/>.</summary>
internal readonly record struct ScheduledChunk(Sequence Sequence, int Tokens);

/// <summary>
/// Continuous batching, first come first served, within <c>max_num_seqs</c> and <c>max_num_batched_tokens</c>.
/// Running sequences are served first in admission order (a decode or the next prefill chunk each), then waiting ones
/// are admitted in order while the step has room. Blocks are allocated as tokens need them. When a running sequence
/// cannot get its next block, the most recently admitted running sequence is preempted (swapped to the host tier or
/// freed for recompute) and put back at the head of the queue; no new sequence is admitted in a step that preempted.
/// The first running sequence can always proceed (admission rejects a sequence the whole pool cannot hold), so the
/// engine never deadlocks.
/// </summary>
internal sealed class Scheduler
{
    private readonly EngineOptions _options;
    private readonly BlockPool _pool;
    private readonly HostTier? _host;
    private readonly RoutingChannel _routing;
    private readonly EngineStats _stats;
    private readonly LinkedList<Sequence> _waiting = new();
    private readonly List<Sequence> _running = [];
    private readonly List<ScheduledChunk> _scheduled = [];
    private readonly List<int> _hits = [];
    private readonly int[] _blockTokens;

    public Scheduler(EngineOptions options, BlockPool pool, HostTier? host, RoutingChannel routing, EngineStats stats)
    {
        _options = options;
        _pool = pool;
        _host = host;
        _routing = routing;
        _stats = stats;
        _blockTokens = new int[options.BlockSize];
    }

    public int WaitingCount => _waiting.Count;

    public int RunningCount => _running.Count;

    public bool HasWork => _waiting.Count > 0 || _running.Count > 0;

    /// <summary>Prompt tokens served by prefix-cache hits (device or host tier) at admission, since the start.</summary>
    public long PrefixHitTokens { get; private set; }

    public void Enqueue(Sequence sequence) => _waiting.AddLast(sequence);

    public IReadOnlyList<ScheduledChunk> Schedule()
    {
        _scheduled.Clear();
        var budget = _options.MaxNumBatchedTokens;
        var preempted = false;
        for (var i = 0; i < _running.Count && budget > 0; i++)
        {
            var sequence = _running[i];
            var tokens = Math.Min(sequence.TokenCount - sequence.ComputedTokens, budget);
            var needed = _options.BlocksFor(sequence.ComputedTokens + tokens) - sequence.BlockTable.Count;
            while (!_pool.CanAllocate(needed) && _running[^1] != sequence)
            {
                Preempt(_running[^1]);
                preempted = true;
            }
            if (!_pool.CanAllocate(needed))
            {
                Preempt(sequence);
                preempted = true;
                break;
            }
            budget -= ScheduleChunk(sequence, tokens);
        }
        while (!preempted && budget > 0 && _waiting.First is { } node && _running.Count < _options.MaxNumSeqs && TryAdmit(node.Value, budget))
        {
            _waiting.RemoveFirst();
            budget -= ScheduleChunk(node.Value, Math.Min(node.Value.TokenCount - node.Value.ComputedTokens, budget));
        }
        return _scheduled;
    }

    /// <summary>Removes a finished or aborted sequence and frees its blocks in both tiers, last block first.</summary>
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
        _host?.Discard(CollectionsMarshal.AsSpan(sequence.HostBlocks));
        sequence.HostBlocks.Clear();
        sequence.Status = SequenceStatus.Finished;
    }

    private int ScheduleChunk(Sequence sequence, int tokens)
    {
        var needed = _options.BlocksFor(sequence.ComputedTokens + tokens) - sequence.BlockTable.Count;
        for (var i = 0; i < needed; i++)
        {
            sequence.BlockTable.Add(_pool.Allocate());
        }
        _scheduled.Add(new ScheduledChunk(sequence, tokens));
        return tokens;
    }

    private void Preempt(Sequence victim)
    {
        _running.Remove(victim);
        var table = CollectionsMarshal.AsSpan(victim.BlockTable);
        var swap = _host is not null && _options.PreemptionMode != PreemptionMode.Recompute && _host.CanSwapOut(table.Length);
        if (swap)
        {
            _host!.SwapOut(table, victim.HostBlocks);
            _stats.PreemptionsBySwap++;
        }
        else
        {
            var rows = victim.ComputedTokens;
            var saved = victim.SavedRouting is { } previous && previous.Length >= rows * _routing.RowBytes ? previous : new byte[rows * _routing.RowBytes];
            _routing.Gather(table, 0, rows, saved);
            victim.SavedRouting = saved;
            victim.SavedRoutingRows = rows;
            victim.ComputedTokens = 0;
            victim.CommittedBlocks = 0;
            victim.LastCommittedKey = victim.RootKey;
            _stats.PreemptionsByRecompute++;
        }
        _pool.ReleaseSequence(table);
        victim.BlockTable.Clear();
        victim.Status = SequenceStatus.Waiting;
        _waiting.AddFirst(victim);
    }

    private bool TryAdmit(Sequence sequence, int budget)
    {
        if (sequence.IsSwapped)
        {
            return TrySwapIn(sequence, budget);
        }
        if (sequence.Choice > 0 && _pool.PrefixCachingEnabled && !FirstChoiceHasComputedPrompt(sequence))
        {
            return false;
        }
        var key = TakePrefixHits(sequence);
        var cached = _hits.Count * _options.BlockSize;
        var firstChunk = Math.Min(sequence.TokenCount - cached, budget);
        if (!_pool.CanAllocate(_options.BlocksFor(cached + firstChunk) - _hits.Count))
        {
            _pool.ReleaseSequence(CollectionsMarshal.AsSpan(_hits));
            return false;
        }
        sequence.BlockTable.AddRange(_hits);
        sequence.CommittedBlocks = _hits.Count;
        sequence.LastCommittedKey = key;
        sequence.ComputedTokens = cached;
        if (sequence.OutputCount == 0 && sequence.SavedRouting is null)
        {
            sequence.CachedTokens = cached;
            PrefixHitTokens += cached;
        }
        sequence.Status = SequenceStatus.Running;
        _running.Add(sequence);
        return true;
    }

    /// <summary>Brings a swapped-out sequence back: one device block per host block, payloads copied back in order.</summary>
    private bool TrySwapIn(Sequence sequence, int budget)
    {
        var hostBlocks = CollectionsMarshal.AsSpan(sequence.HostBlocks);
        var firstChunk = Math.Min(sequence.TokenCount - sequence.ComputedTokens, budget);
        if (!_pool.CanAllocate(Math.Max(hostBlocks.Length, _options.BlocksFor(sequence.ComputedTokens + firstChunk))))
        {
            return false;
        }
        foreach (var _ in hostBlocks)
        {
            sequence.BlockTable.Add(_pool.Allocate());
        }
        _host!.SwapIn(hostBlocks, CollectionsMarshal.AsSpan(sequence.BlockTable));
        sequence.HostBlocks.Clear();
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
    /// Takes references on cached blocks holding the sequence's leading full blocks, from the device pool or promoted
    /// from the host tier, stopping at the first miss and never covering the block of the last token (its logits are
    /// needed, and shared blocks are never written). Returns the chain key of the last hit.
    /// </summary>
    private BlockKey TakePrefixHits(Sequence sequence)
    {
        _hits.Clear();
        var key = sequence.RootKey;
        if (!_pool.PrefixCachingEnabled)
        {
            return key;
        }
        var blockSize = _options.BlockSize;
        var candidates = (sequence.TokenCount - 1) / blockSize;
        for (var b = 0; b < candidates; b++)
        {
            for (var i = 0; i < blockSize; i++)
            {
                _blockTokens[i] = sequence.Tokens[(b * blockSize) + i];
            }
            var next = BlockKey.Chain(key, _blockTokens);
            if (_pool.TryHit(next, key, _blockTokens, out var block)
                || (_host is not null && _pool.CanAllocate(1) && _host.TryPromote(next, key, _blockTokens, out block)))
            {
                _hits.Add(block);
                key = next;
                continue;
            }
            break;
        }
        return key;
    }
}
