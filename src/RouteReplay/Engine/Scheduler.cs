using System.Runtime.InteropServices;
using RouteReplay.Cache;
using RouteReplay.Storage;

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
/// engine never deadlocks. With a block store, a sequence whose prompt misses the device and host tiers first waits,
/// in the loading state, for one store lookup (other sequences are admitted past it meanwhile); the blocks it loads
/// become device prefix hits at its admission.
/// </summary>
internal sealed class Scheduler
{
    private readonly EngineOptions _options;
    private readonly BlockPool _pool;
    private readonly HostTier? _host;
    private readonly BlockStoreTier? _store;
    private readonly PayloadCopier? _copier;
    private readonly RoutingChannel _routing;
    private readonly EngineStats _stats;
    private readonly LinkedList<Sequence> _waiting = new();
    private readonly List<Sequence> _running = [];
    private readonly List<ScheduledChunk> _scheduled = [];
    private readonly List<int> _hits = [];
    private readonly List<object> _loaded = [];
    private readonly int[] _blockTokens;

    public Scheduler(EngineOptions options, BlockPool pool, HostTier? host, BlockStoreTier? store, PayloadCopier? copier, RoutingChannel routing, EngineStats stats)
    {
        _options = options;
        _pool = pool;
        _host = host;
        _store = store;
        _copier = copier;
        _routing = routing;
        _stats = stats;
        _blockTokens = new int[options.BlockSize];
    }

    public int WaitingCount => _waiting.Count;

    public int RunningCount => _running.Count;

    public bool HasWork => _waiting.Count > 0 || _running.Count > 0;

    /// <summary>Waiting sequences whose store lookup is in flight.</summary>
    public int LoadingCount { get; private set; }

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
        AdmitStoreLoads();
        var node = _waiting.First;
        while (!preempted && budget > 0 && node is not null && _running.Count < _options.MaxNumSeqs)
        {
            var next = node.Next;
            var sequence = node.Value;
            if (sequence.StoreLookup == StoreLookup.Loading)
            {
                node = next;
                continue;
            }
            if (!TryAdmit(sequence, budget))
            {
                if (sequence.StoreLookup == StoreLookup.Loading)
                {
                    node = next;
                    continue;
                }
                break;
            }
            _waiting.Remove(node);
            budget -= ScheduleChunk(sequence, Math.Min(sequence.TokenCount - sequence.ComputedTokens, budget));
            node = next;
        }
        return _scheduled;
    }

    /// <summary>Puts the blocks of completed store lookups into the device pool and lets their sequences be admitted.</summary>
    private void AdmitStoreLoads()
    {
        if (_store is null || _store.PendingLoads == 0)
        {
            return;
        }
        _loaded.Clear();
        _store.AdmitCompletedLoads(_pool, _copier!, _loaded);
        foreach (var owner in _loaded)
        {
            var sequence = (Sequence)owner;
            if (sequence.StoreLookup == StoreLookup.Loading)
            {
                sequence.StoreLookup = StoreLookup.Done;
                LoadingCount--;
            }
        }
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
        if (sequence.StoreLookup == StoreLookup.Loading)
        {
            sequence.StoreLookup = StoreLookup.Done;
            LoadingCount--;
        }
        _pool.ReleaseSequence(CollectionsMarshal.AsSpan(sequence.BlockTable));
        sequence.BlockTable.Clear();
        _host?.Discard(CollectionsMarshal.AsSpan(sequence.HostBlocks));
        sequence.HostBlocks.Clear();
        sequence.Status = SequenceStatus.Finished;
    }

    /// <summary>
    /// Checks the block accounting against the sequences: every device block's ref count equals the number of running
    /// block tables that hold it (waiting sequences hold none), every block with ref count 0 is in the free queue,
    /// and the host tier's used blocks are exactly those of swapped-out sequences. Returns the first mismatch, or null.
    /// O(blocks); run after a failed step, never per step. A component that comes to hold block references outside
    /// sequences must be counted here.
    /// </summary>
    public string? FindAccountingError()
    {
        var held = new int[_pool.NumBlocks];
        foreach (var sequence in _running)
        {
            foreach (var block in sequence.BlockTable)
            {
                held[block]++;
            }
        }
        var hostHeld = 0;
        foreach (var sequence in _waiting)
        {
            if (sequence.BlockTable.Count > 0)
            {
                return $"waiting request '{sequence.Request.Request.RequestId}' still holds {sequence.BlockTable.Count} device blocks";
            }
            hostHeld += sequence.HostBlocks.Count;
        }
        var free = 0;
        for (var block = 0; block < held.Length; block++)
        {
            var refs = _pool.RefCount(block);
            if (refs != held[block])
            {
                return $"device block {block} has ref count {refs} but running requests hold it {held[block]} times";
            }
            free += refs == 0 ? 1 : 0;
        }
        if (free != _pool.FreeBlockCount)
        {
            return $"{free} device blocks have ref count 0 but the free queue holds {_pool.FreeBlockCount}";
        }
        if (_host is not null && _host.UsedBlockCount != hostHeld)
        {
            return $"the host tier has {_host.UsedBlockCount} blocks in use but swapped-out requests hold {hostHeld}";
        }
        return null;
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
            SaveRouting(victim, table);
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

    /// <summary>
    /// Adds the rows computed beyond the saved ones to the victim's saved rows. Saved rows only grow: a sequence
    /// preempted again part-way through its recompute keeps the saved rows it has not recomputed yet, and the ones it
    /// has are the saved rows themselves (replayed, or taken from a hit that holds them).
    /// </summary>
    private void SaveRouting(Sequence victim, ReadOnlySpan<int> table)
    {
        var saved = victim.SavedRoutingRows;
        var rows = Math.Max(saved, victim.ComputedTokens);
        var rowBytes = _routing.RowBytes;
        if (victim.SavedRouting is null || victim.SavedRouting.Length < rows * rowBytes)
        {
            var grown = new byte[rows * rowBytes];
            victim.SavedRouting?.AsSpan(0, saved * rowBytes).CopyTo(grown);
            victim.SavedRouting = grown;
        }
        _routing.Gather(table, saved, rows - saved, victim.SavedRouting.AsSpan(saved * rowBytes));
        victim.SavedRoutingRows = rows;
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
        if (ShouldLookUpStore(sequence))
        {
            BeginStoreLookup(sequence, key);
            return false;
        }
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

    /// <summary>
    /// A sequence on its first admission whose leading full blocks (never the last token's) missed the device and host
    /// tiers past <see cref="_hits"/> asks the store once; later choices of a request wait for the first one instead.
    /// </summary>
    private bool ShouldLookUpStore(Sequence sequence)
    {
        if (_store is null || sequence.StoreLookup != StoreLookup.NotTried)
        {
            return false;
        }
        sequence.StoreLookup = StoreLookup.Done;
        var candidates = (sequence.TokenCount - 1) / _options.BlockSize;
        return _pool.PrefixCachingEnabled && sequence.Choice == 0 && sequence.OutputCount == 0 && sequence.SavedRouting is null && _hits.Count < candidates;
    }

    /// <summary>Gives back the hits just taken (they stay cached) and starts the lookup of the blocks after them.</summary>
    private void BeginStoreLookup(Sequence sequence, BlockKey parent)
    {
        var blockSize = _options.BlockSize;
        var first = _hits.Count;
        var candidates = (sequence.TokenCount - 1) / blockSize;
        _pool.ReleaseSequence(CollectionsMarshal.AsSpan(_hits));
        _hits.Clear();
        var tokens = new int[(candidates - first) * blockSize];
        for (var i = 0; i < tokens.Length; i++)
        {
            tokens[i] = sequence.Tokens[(first * blockSize) + i];
        }
        sequence.StoreLookup = StoreLookup.Loading;
        LoadingCount++;
        _store!.BeginLoad(sequence, parent, tokens);
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
            if (!_pool.TryHit(next, key, _blockTokens, out var block) && (_host is null || !_host.TryPromote(next, key, _blockTokens, out block)))
            {
                break;
            }
            if (!HoldsSavedRows(sequence, b, block))
            {
                _pool.Release(block);
                _stats.PrefixHitsRefusedForRouting++;
                break;
            }
            _hits.Add(block);
            key = next;
        }
        return key;
    }

    /// <summary>
    /// True when block <paramref name="b"/> of the sequence, found in the prefix cache, holds exactly the rows the
    /// sequence saved for its positions below <see cref="Sequence.SavedRoutingRows"/>. A recomputing sequence's tokens
    /// were sampled with its saved rows; a block another request computed may hold other rows for the same tokens (a
    /// backend whose routing depends on the batch), and taking it would change rows already produced. Such a hit is a
    /// miss for this block and the rest of the run: the sequence recomputes them, replaying its saved rows.
    /// </summary>
    private bool HoldsSavedRows(Sequence sequence, int b, int block)
    {
        var blockSize = _options.BlockSize;
        var saved = Math.Min(sequence.SavedRoutingRows - (b * blockSize), blockSize);
        if (saved <= 0)
        {
            return true;
        }
        var rowBytes = _routing.RowBytes;
        var rows = _routing.BlockRows(block)[..(saved * rowBytes)];
        return rows.SequenceEqual(sequence.SavedRouting.AsSpan(b * blockSize * rowBytes, saved * rowBytes));
    }
}
