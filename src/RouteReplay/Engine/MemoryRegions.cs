using RouteReplay.Backends;

namespace RouteReplay.Engine;

/// <summary>The device memory a sleeping engine gives back (SGLang's tags <c>weights</c> and <c>kv_cache</c>).</summary>
[Flags]
public enum MemoryRegions
{
    None = 0,
    Weights = 1,
    KvCache = 2,
    All = Weights | KvCache,
}

/// <summary>What an engine has released: it serves only while nothing is.</summary>
public sealed record MemoryState(bool KvCacheReleased, WeightsResidence Weights)
{
    public static MemoryState Awake { get; } = new(false, WeightsResidence.Resident);

    public bool IsReleased => KvCacheReleased || Weights != WeightsResidence.Resident;

    /// <summary>The regions released now.</summary>
    public MemoryRegions Released =>
        (KvCacheReleased ? MemoryRegions.KvCache : MemoryRegions.None) | (Weights != WeightsResidence.Resident ? MemoryRegions.Weights : MemoryRegions.None);
}

/// <summary>A resume asked for weights that a release dropped and that no weight update has replaced since.</summary>
public sealed class WeightsDiscardedException(string message) : InvalidOperationException(message);
