using RouteReplay.Backends;

namespace RouteReplay.Engine;

/// <summary>
/// Sharing the device with another process (a trainer): between steps, with no request running, the engine gives
/// back its KV cache and, as asked, its weights, and takes them again at resume. Nothing refers to a released pool:
/// exports still holding blocks are released, pending block copies complete, the device prefix index is cleared and
/// store lookups in flight are discarded before the backend frees anything; requests are refused until every region is back.
/// </summary>
/// <remarks>
/// The host tier and the block store stay valid across a release: their payloads are in host memory or the store,
/// keyed by the model fingerprint, which changes with any new weights. Only what was on the device is dropped.
/// </remarks>
public sealed partial class LlmEngine
{
    private MemoryState _memoryState = MemoryState.Awake;

    /// <summary>What is released now; an immutable snapshot, safe to read from any thread.</summary>
    public MemoryState MemoryState => Volatile.Read(ref _memoryState);

    /// <summary>Told, on the step thread, the memory state after every release, resume or weight update.</summary>
    public Action<MemoryState>? MemoryStateChanged { get; set; }

    /// <summary>
    /// Releases <paramref name="regions"/>: the KV cache (every device block's content is lost, and the device prefix
    /// index with it) and the weights (kept in host memory when <paramref name="keepWeightsInHost"/>, else dropped until
    /// a weight update replaces them). Only between steps with no request running (an
    /// <see cref="InvalidOperationException"/> otherwise); no region is a no-op.
    /// </summary>
    /// <exception cref="NotSupportedException">The backend cannot release its memory.</exception>
    public void ReleaseMemory(MemoryRegions regions, bool keepWeightsInHost)
    {
        var backend = ReleasableBackend;
        if (regions == MemoryRegions.None)
        {
            return;
        }
        if (HasUnfinishedRequests)
        {
            throw new InvalidOperationException($"memory can only be released with no request running ({_requests.Count} are)");
        }
        try
        {
            if (regions.HasFlag(MemoryRegions.KvCache))
            {
                ReleaseKvCache(backend);
            }
            if (regions.HasFlag(MemoryRegions.Weights))
            {
                _backend.Synchronize();
                backend.ReleaseWeights(keepWeightsInHost);
            }
        }
        finally
        {
            PublishMemoryState();
        }
    }

    /// <summary>
    /// Takes back <paramref name="regions"/> (those not released are left alone): the weights from their host copy, and
    /// a KV cache of the same size, every block free and uncached.
    /// </summary>
    /// <exception cref="WeightsDiscardedException">The weights are asked for but were dropped and not replaced; nothing changes.</exception>
    public void ResumeMemory(MemoryRegions regions)
    {
        var backend = ReleasableBackend;
        if (regions.HasFlag(MemoryRegions.Weights) && backend.Weights == WeightsResidence.Discarded)
        {
            throw new WeightsDiscardedException(
                "the weights were discarded at release (level 2) and no weights were loaded since: update them (/update_weights_from_disk) before resuming the weights");
        }
        try
        {
            if (regions.HasFlag(MemoryRegions.Weights))
            {
                backend.RestoreWeights();
            }
            if (regions.HasFlag(MemoryRegions.KvCache))
            {
                backend.RestoreKvCache();
            }
        }
        finally
        {
            PublishMemoryState();
        }
    }

    private void ReleaseKvCache(IReleasableBackend backend)
    {
        foreach (var export in _exports.ToArray())
        {
            ReleaseExport(export);
        }
        if (_pool.UsedBlockCount != 0)
        {
            throw new InvalidOperationException($"{_pool.UsedBlockCount} KV blocks are still in use with no request running");
        }
        _backend.Synchronize();
        _pool.ResetPrefixCache();
        _store?.Reset();
        backend.ReleaseKvCache();
    }

    private IReleasableBackend ReleasableBackend =>
        _backend as IReleasableBackend ?? throw new NotSupportedException("this backend cannot release its memory");

    private void PublishMemoryState()
    {
        var state = _backend is IReleasableBackend backend ? new MemoryState(backend.KvCacheReleased, backend.Weights) : MemoryState.Awake;
        Volatile.Write(ref _memoryState, state);
        MemoryStateChanged?.Invoke(state);
    }
}
