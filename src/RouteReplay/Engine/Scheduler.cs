using System.Runtime.InteropServices;
using RouteReplay.Cache;
using RouteReplay.Storage;

namespace RouteReplay.Engine;

/// <summary>A sequence and how many of its tokens the step computes, starting at its <see cref="Sequence.ComputedTokens"/>.</summary>
internal readonly record struct ScheduledChunk(Sequence Sequence, int Tokens);

/// <summary>What trying to admit a waiting sequence did.</summary>
internal enum Admission
{
    /// <summary>Running: its first chunk is scheduled.</summary>
    Admitted,

    /// <summary>Its request's choices wait for a prefill source's blocks, holding theirs (<see cref="SequenceStatus.Importing"/>).</summary>
    Importing,

    /// <summary>Its store lookup started; later sequences may be admitted past it.</summary>
    Deferred,

    /// <summary>It cannot be admitted now, and nothing after it is (first come, first served).</summary>
    Blocked,
}

/// <summary>
/// Continuous batching, first come first served, within <c>max_num_seqs</c> and <c>max_num_batched_tokens</c>.
/// Running sequences are served first in admission order (a decode or the next prefill chunk each), then waiting ones
/// are admitted in order while the step has room. Blocks are allocated as tokens need them. When a running sequence
/// cannot get its next block, the most recently admitted running sequence is preempted (swapped to the host tier or
/// freed for recompute) and put back at the head of the queue; no new sequence is admitted in a step that preempted.
/// The first running sequence can always proceed (admission rejects a sequence the whole pool cannot hold), so the
/// engine never deadlocks. With a block store, a sequence whose prompt misses the device and host tiers first waits,
/// in the loading state, for one store lookup (other sequences are admitted past it meanwhile); the blocks it loads
/// become device prefix hits at its admission. A request with a remote prefill is admitted with all its choices at
/// once: it takes its prefix hits, allocates the rest of its prompt's blocks and waits, importing, for a prefill
/// source's payloads (its choices count against <c>max_num_seqs</c> and are never preempted meanwhile); the engine
/// then makes them running with their first token. Store lookups and imports are the two ways a sequence waits for
/// blocks that arrive off the step thread (<see cref="LoadingCount"/>).
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
    private readonly List<BlockImport> _imports = [];
    private readonly int[] _blockTokens;
    private int _storeLookups;

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

    public bool HasWork => _waiting.Count > 0 || _running.Count > 0 || _imports.Count > 0;

    /// <summary>Sequences waiting for blocks that arrive off the step thread: store lookups in flight and imports.</summary>
    public int LoadingCount => _storeLookups + ImportingSequences;

    /// <summary>Choices of requests whose prompt blocks are being imported.</summary>
    public int ImportingSequences { get; private set; }

    /// <summary>Imports in flight, in admission order.</summary>
    public IReadOnlyList<BlockImport> Imports => _imports;

    /// <summary>Makes the import of a request being admitted with its held blocks' count and row digests (set by the engine).</summary>
    public Func<RequestState, int, UInt128[], BlockImport>? CreateImport { get; set; }

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
        while (!preempted && budget > 0 && node is not null && _running.Count + ImportingSequences < _options.MaxNumSeqs)
        {
            var sequence = node.Value;
            if (sequence.StoreLookup == StoreLookup.Loading)
            {
                node = node.Next;
                continue;
            }
            var admission = TryAdmit(sequence, budget);
            if (admission == Admission.Deferred)
            {
                node = node.Next;
                continue;
            }
            if (admission == Admission.Blocked)
            {
                break;
            }
            var next = node.Next;
            _waiting.Remove(node);
            if (admission == Admission.Admitted)
            {
                budget -= ScheduleChunk(sequence, Math.Min(sequence.TokenCount - sequence.ComputedTokens, budget));
            }
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
                _storeLookups--;
            }
        }
    }

    /// <summary>
    /// Removes a finished or aborted sequence and frees its blocks in both tiers, last block first. Removing a choice
    /// of a request being imported abandons the import (see <see cref="AbandonImport"/>).
    /// </summary>
    public void Remove(Sequence sequence)
    {
        if (sequence.Status == SequenceStatus.Waiting)
        {
            _waiting.Remove(sequence);
        }
        else if (sequence.Status == SequenceStatus.Importing)
        {
            if (sequence.Request.Import is { } import)
            {
                AbandonImport(import);
            }
        }
        else
        {
            _running.Remove(sequence);
        }
        if (sequence.StoreLookup == StoreLookup.Loading)
        {
            sequence.StoreLookup = StoreLookup.Done;
            _storeLookups--;
        }
        _pool.ReleaseSequence(CollectionsMarshal.AsSpan(sequence.BlockTable));
        sequence.BlockTable.Clear();
        _host?.Discard(CollectionsMarshal.AsSpan(sequence.HostBlocks));
        sequence.HostBlocks.Clear();
        sequence.Status = SequenceStatus.Finished;
    }

    /// <summary>
    /// Checks the block accounting against the sequences: every device block's ref count equals the number of running
    /// block tables that hold it (waiting sequences hold none) plus the references imports hold and those in
    /// <paramref name="otherHolds"/> (blocks an export holds for its peer), every block with ref count 0 is in the free
    /// queue, and the host tier's used blocks are exactly those of swapped-out sequences. Returns the first mismatch,
    /// or null. O(blocks); run after a failed step, never per step. A component that comes to hold block references
    /// outside sequences must be counted here.
    /// </summary>
    public string? FindAccountingError(IEnumerable<int>? otherHolds = null)
    {
        var held = new int[_pool.NumBlocks];
        foreach (var sequence in _running)
        {
            foreach (var block in sequence.BlockTable)
            {
                held[block]++;
            }
        }
        foreach (var import in _imports)
        {
            foreach (var block in import.Blocks)
            {
                held[block]++;
            }
            foreach (var block in import.LastBlocks)
            {
                held[block]++;
            }
        }
        foreach (var block in otherHolds ?? [])
        {
            held[block]++;
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

    private Admission TryAdmit(Sequence sequence, int budget)
    {
        if (sequence.IsSwapped)
        {
            return TrySwapIn(sequence, budget) ? Admission.Admitted : Admission.Blocked;
        }
        if (sequence.Request.WantsImport && sequence.OutputCount == 0 && sequence.SavedRouting is null)
        {
            return sequence.Choice == 0 ? TryBeginImport(sequence) : Admission.Blocked;
        }
        if (sequence.Request.Request.PrefillExport is { } export && sequence.Choice > 0)
        {
            return TryShareExportedPrompt(sequence, export, budget);
        }
        if (sequence.Choice > 0 && _pool.PrefixCachingEnabled && !FirstChoiceHasComputedPrompt(sequence))
        {
            return Admission.Blocked;
        }
        var key = TakePrefixHits(sequence);
        if (ShouldLookUpStore(sequence))
        {
            BeginStoreLookup(sequence, key);
            return Admission.Deferred;
        }
        var cached = _hits.Count * _options.BlockSize;
        var firstChunk = Math.Min(sequence.TokenCount - cached, budget);
        if (!_pool.CanAllocate(_options.BlocksFor(cached + firstChunk) - _hits.Count))
        {
            _pool.ReleaseSequence(CollectionsMarshal.AsSpan(_hits));
            return Admission.Blocked;
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
        return Admission.Admitted;
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
        _storeLookups++;
        _store!.BeginLoad(sequence, parent, tokens);
    }

    /// <summary>
    /// Admits a request with a remote prefill, all its choices at once (<paramref name="first"/> is choice 0): takes its
    /// prefix hits (after one store lookup, as any prompt), allocates a block for every other shared prompt block and
    /// one last prompt block per choice, and starts the import from the request's current source. Blocked while the
    /// choices do not fit <c>max_num_seqs</c> beside the running ones or the blocks are not free.
    /// </summary>
    private Admission TryBeginImport(Sequence first)
    {
        var state = first.Request;
        var n = state.Choices.Length;
        if (_running.Count + ImportingSequences + n > _options.MaxNumSeqs)
        {
            return Admission.Blocked;
        }
        var key = TakePrefixHits(first);
        if (ShouldLookUpStore(first))
        {
            BeginStoreLookup(first, key);
            return Admission.Deferred;
        }
        var shared = (first.PromptLength - 1) / _options.BlockSize;
        if (!_pool.CanAllocate(shared - _hits.Count + n))
        {
            _pool.ReleaseSequence(CollectionsMarshal.AsSpan(_hits));
            return Admission.Blocked;
        }
        var digests = new UInt128[_hits.Count];
        for (var b = 0; b < digests.Length; b++)
        {
            digests[b] = _copier!.RowsDigest(_hits[b]);
        }
        var import = CreateImport!(state, _hits.Count, digests);
        _hits.CopyTo(import.Blocks);
        for (var b = _hits.Count; b < shared; b++)
        {
            import.Blocks[b] = _pool.Allocate();
        }
        for (var c = 0; c < n; c++)
        {
            import.LastBlocks[c] = _pool.Allocate();
            var choice = state.Choices[c];
            if (c > 0)
            {
                _waiting.Remove(choice);
            }
            choice.Status = SequenceStatus.Importing;
        }
        _imports.Add(import);
        ImportingSequences += n;
        state.Import = import;
        try
        {
            import.Source.Start(import);
        }
        catch (Exception e)
        {
            import.Fail(e);
        }
        return Admission.Importing;
    }

    /// <summary>
    /// The source kept the first <paramref name="kept"/> held blocks; the rest of them it computed with other rows and
    /// sends: they are released and replaced by newly allocated blocks. False when no block is free for that.
    /// </summary>
    public bool KeepAgreedBlocks(BlockImport import, int kept)
    {
        var held = import.HeldBlocks;
        for (var b = held - 1; b >= kept; b--)
        {
            _pool.Release(import.Blocks[b]);
            import.Blocks[b] = -1;
        }
        import.KeptBlocks = kept;
        if (!_pool.CanAllocate(held - kept))
        {
            return false;
        }
        for (var b = kept; b < held; b++)
        {
            import.Blocks[b] = _pool.Allocate();
        }
        return true;
    }

    /// <summary>
    /// Ends a complete import: each choice runs with the prompt computed (its table the shared blocks, each taken once
    /// more for the choices after the first, then its own last block), appended after the running sequences. The first
    /// choice has the kept hits committed, the others every shared block: the engine commits what remains.
    /// </summary>
    public void CompleteImport(BlockImport import)
    {
        _imports.Remove(import);
        var state = import.Request;
        ImportingSequences -= state.Choices.Length;
        state.Import = null;
        for (var c = 0; c < state.Choices.Length; c++)
        {
            var sequence = state.Choices[c];
            foreach (var block in import.Blocks)
            {
                if (c > 0)
                {
                    _pool.Share(block);
                }
                sequence.BlockTable.Add(block);
            }
            sequence.BlockTable.Add(import.LastBlocks[c]);
            sequence.CommittedBlocks = c == 0 ? import.KeptBlocks : import.SharedBlocks;
            sequence.LastCommittedKey = import.KeyBefore(sequence.CommittedBlocks);
            sequence.ComputedTokens = sequence.PromptLength;
            sequence.CachedTokens = import.SourceCachedTokens;
            sequence.Status = SequenceStatus.Running;
            _running.Add(sequence);
        }
    }

    /// <summary>
    /// Gives up an import (its source failed, or the request ended): the source is told to stop, every block the import
    /// holds is released (last first) and its choices are left waiting outside the queue for <see cref="Requeue"/>, or
    /// to be failed.
    /// </summary>
    public void AbandonImport(BlockImport import)
    {
        if (!_imports.Remove(import))
        {
            return;
        }
        import.Cancel();
        var state = import.Request;
        ImportingSequences -= state.Choices.Length;
        state.Import = null;
        for (var c = import.LastBlocks.Length - 1; c >= 0; c--)
        {
            _pool.Release(import.LastBlocks[c]);
        }
        for (var b = import.Blocks.Length - 1; b >= 0; b--)
        {
            if (import.Blocks[b] >= 0)
            {
                _pool.Release(import.Blocks[b]);
            }
        }
        foreach (var sequence in state.Choices)
        {
            if (sequence.Status == SequenceStatus.Importing)
            {
                sequence.Status = SequenceStatus.Waiting;
            }
        }
    }

    /// <summary>Puts the waiting choices of a request back at the head of the queue, in choice order.</summary>
    public void Requeue(RequestState state)
    {
        for (var c = state.Choices.Length - 1; c >= 0; c--)
        {
            if (state.Choices[c].Status == SequenceStatus.Waiting)
            {
                _waiting.AddFirst(state.Choices[c]);
            }
        }
    }

    /// <summary>
    /// A later choice of a request whose blocks are exported takes the first choice's shared prompt blocks (held by the
    /// export since that choice computed them) and computes only its own last prompt block, so every choice's first
    /// token comes from one copy of the shared blocks, whatever the prefix cache holds.
    /// </summary>
    private Admission TryShareExportedPrompt(Sequence sequence, BlockExport export, int budget)
    {
        if (export.PromptBlocks is not { } shared)
        {
            return Admission.Blocked;
        }
        var cached = shared.Length * _options.BlockSize;
        var firstChunk = Math.Min(sequence.TokenCount - cached, budget);
        if (!_pool.CanAllocate(_options.BlocksFor(cached + firstChunk) - shared.Length))
        {
            return Admission.Blocked;
        }
        foreach (var block in shared)
        {
            _pool.Share(block);
            sequence.BlockTable.Add(block);
        }
        sequence.CommittedBlocks = shared.Length;
        sequence.LastCommittedKey = export.KeyBefore(shared.Length);
        sequence.ComputedTokens = cached;
        sequence.CachedTokens = cached;
        sequence.Status = SequenceStatus.Running;
        _running.Add(sequence);
        return Admission.Admitted;
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
