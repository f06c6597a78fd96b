namespace RouteReplay.Cache;

/// <summary>
/// A tier below another in the chain device pool, host tier, block store: it is offered every cached block the tier
/// above evicts, while the block's payload is still intact, and keeps it or passes it further down.
/// </summary>
public interface ILowerTier
{
    void OnEvicted(BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds, in EvictedPayload payload);
}

/// <summary>
/// Where an evicted block's payload can be read from while the eviction runs: a device block (read through the
/// <see cref="PayloadCopier"/>, so device memory is never touched directly) or host bytes.
/// </summary>
public readonly ref struct EvictedPayload
{
    private readonly PayloadCopier? _copier;
    private readonly int _deviceBlock;
    private readonly ReadOnlySpan<byte> _hostBytes;

    private EvictedPayload(PayloadCopier? copier, int deviceBlock, ReadOnlySpan<byte> hostBytes)
    {
        _copier = copier;
        _deviceBlock = deviceBlock;
        _hostBytes = hostBytes;
    }

    public static EvictedPayload OnDevice(PayloadCopier copier, int deviceBlock) => new(copier, deviceBlock, default);

    public static EvictedPayload InHost(ReadOnlySpan<byte> payload) => new(null, -1, payload);

    /// <summary>The device block the payload is in, or -1 when it is already in host memory.</summary>
    public int DeviceBlock => _copier is null ? -1 : _deviceBlock;

    /// <summary>Copies the whole payload (PayloadCopier's layout) into <paramref name="destination"/>.</summary>
    public void CopyTo(Span<byte> destination)
    {
        if (_copier is not null)
        {
            _copier.DeviceToHost(_deviceBlock, destination);
        }
        else
        {
            _hostBytes.CopyTo(destination);
        }
    }
}

/// <summary>Passes the device pool's evictions to the first lower tier, with the evicted device block as the payload source.</summary>
public sealed class DeviceEvictionRelay(PayloadCopier copier, ILowerTier lower) : IBlockEvictionSink
{
    public void OnEvict(int block, BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds) =>
        lower.OnEvicted(key, parent, tokenIds, EvictedPayload.OnDevice(copier, block));
}
