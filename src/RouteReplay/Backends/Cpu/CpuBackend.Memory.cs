namespace RouteReplay.Backends.Cpu;

/// <summary>
/// Giving memory back while the engine sleeps: the KV arrays are dropped (and made anew at restore), the weights are
/// kept aside (the host copy) or dropped, so the garbage collector can reclaim what is no longer referenced.
/// </summary>
public sealed partial class CpuBackend : IReleasableBackend
{
    private ModelWeights? _hostCopy;

    public bool KvCacheReleased => _cache is null;

    public WeightsResidence Weights => _weights is not null ? WeightsResidence.Resident
        : _hostCopy is not null ? WeightsResidence.HostCopy
        : WeightsResidence.Discarded;

    /// <summary>The KV arrays, null while released (tests check that a release lets them be collected).</summary>
    internal CpuKvCache? Cache => _cache;

    /// <summary>Bytes the KV arrays hold now: 0 while the KV cache is released.</summary>
    public long KvCacheBytes => _cache?.Bytes ?? 0;

    private CpuKvCache LiveCache => _cache ?? throw new InvalidOperationException("the KV cache is released; restore it before a forward or a block copy");

    private ModelWeights LiveWeights => _weights ?? throw new InvalidOperationException($"the weights are released ({Weights}); restore or replace them before a forward");

    public void ReleaseKvCache() => _cache = null;

    public void RestoreKvCache() => _cache ??= new CpuKvCache(Config, NumBlocks, BlockSize);

    public void ReleaseWeights(bool keepHostCopy)
    {
        _hostCopy = keepHostCopy ? _weights ?? _hostCopy : null;
        _weights = null;
    }

    public void RestoreWeights()
    {
        if (_weights is not null)
        {
            return;
        }
        _weights = _hostCopy ?? throw new InvalidOperationException("the weights were discarded; only new weights can replace them");
        _hostCopy = null;
    }
}
