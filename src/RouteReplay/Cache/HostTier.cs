namespace RouteReplay.Cache;

/// <summary>
/// The host-memory tier: whole block payloads for swapped-out sequences and for prefix blocks demoted from the device
/// pool. Its blocks follow the same rules as the device pool's (a <see cref="BlockPool"/> without channels does the
/// bookkeeping): a swapped block is held by its sequence; a demoted block is cached and free, evicted least recently
/// demoted first when space is needed; a promotion is a verified prefix hit. A demoted block the tier evicts, or a
/// device block it has no room for, goes on to <see cref="Lower"/> (the block store), when there is one.
/// </summary>
public sealed class HostTier : ILowerTier
{
    private readonly BlockPool _devicePool;
    private readonly BlockPool _pool;
    private readonly HostPayloadStore _store;
    private readonly PayloadCopier _copier;

    public HostTier(BlockPool devicePool, PayloadCopier copier, int numBlocks)
    {
        _devicePool = devicePool;
        _copier = copier;
        _pool = new BlockPool(numBlocks, devicePool.BlockSize, devicePool.PrefixCachingEnabled, []);
        _store = new HostPayloadStore(numBlocks, copier.PayloadBytes);
        _pool.EvictionSink = new HostEvictionRelay(this);
    }

    /// <summary>The next tier down, offered every demoted block this tier evicts.</summary>
    public ILowerTier? Lower { get; set; }

    /// <summary>Host blocks that fit in <paramref name="gibibytes"/> for a payload of <paramref name="payloadBytes"/>.</summary>
    public static int BlocksFor(double gibibytes, int payloadBytes) => (int)Math.Min(int.MaxValue, gibibytes * (1L << 30) / payloadBytes);

    public int NumBlocks => _pool.NumBlocks;

    /// <summary>Blocks held by swapped-out sequences.</summary>
    public int UsedBlockCount => _pool.UsedBlockCount;

    /// <summary>Demoted prefix blocks currently cached in host memory.</summary>
    public int CachedBlockCount => _pool.CachedBlockCount;

    public long BlocksSwappedOut { get; private set; }

    public long BlocksSwappedIn { get; private set; }

    public long BlocksDemoted { get; private set; }

    public long BlocksPromoted { get; private set; }

    /// <summary>True when <paramref name="blocks"/> payloads fit, counting demoted blocks that may be evicted.</summary>
    public bool CanSwapOut(int blocks) => _pool.CanAllocate(blocks);

    /// <summary>Copies a device block's payload to a new host block held by the caller; the device block is not released.</summary>
    public int SwapOut(int deviceBlock)
    {
        var hostBlock = _pool.Allocate();
        _copier.DeviceToHost(deviceBlock, _store.Payload(hostBlock));
        BlocksSwappedOut++;
        return hostBlock;
    }

    /// <summary>Copies a swapped payload into a device block the caller allocated, and frees the host block.</summary>
    public void SwapIn(int hostBlock, int deviceBlock)
    {
        _copier.HostToDevice(_store.Payload(hostBlock), deviceBlock);
        _pool.Release(hostBlock);
        BlocksSwappedIn++;
    }

    /// <summary>The payload held in a host block (read-only; a swapped-out sequence's rows are read through it).</summary>
    public ReadOnlySpan<byte> Payload(int hostBlock) => _store.Payload(hostBlock);

    /// <summary>Frees the host blocks of a swapped-out sequence that will not resume (aborted).</summary>
    public void Discard(ReadOnlySpan<int> hostBlocks) => _pool.ReleaseSequence(hostBlocks);

    /// <summary>
    /// Demotes an evicted device prefix block when the host tier has room and does not hold its key yet; without room
    /// it goes on to <see cref="Lower"/>.
    /// </summary>
    public void OnEvicted(BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds, in EvictedPayload payload)
    {
        if (!_pool.PrefixCachingEnabled || _pool.Holds(key))
        {
            return;
        }
        if (!_pool.CanAllocate(1))
        {
            Lower?.OnEvicted(key, parent, tokenIds, payload);
            return;
        }
        var hostBlock = _pool.Allocate();
        payload.CopyTo(_store.Payload(hostBlock));
        _pool.Commit(hostBlock, key, parent, tokenIds);
        _pool.Release(hostBlock);
        BlocksDemoted++;
    }

    /// <summary>
    /// On a verified host hit, copies the payload into a newly allocated device block, indexes it there and returns
    /// it with one reference for the caller. With no free device block it is a miss, and the host block stays cached.
    /// The device allocation may evict a cached device block, which is demoted here meanwhile; the block being
    /// promoted is held during the copy, so that demotion never evicts it.
    /// </summary>
    public bool TryPromote(BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds, out int deviceBlock)
    {
        if (!_devicePool.CanAllocate(1) || !_pool.TryHit(key, parent, tokenIds, out var hostBlock))
        {
            deviceBlock = -1;
            return false;
        }
        deviceBlock = _devicePool.Allocate();
        _copier.HostToDevice(_store.Payload(hostBlock), deviceBlock);
        _devicePool.Commit(deviceBlock, key, parent, tokenIds);
        _pool.Release(hostBlock);
        BlocksPromoted++;
        return true;
    }

    /// <summary>Drops every demoted key (flush, or new weights).</summary>
    public void ResetPrefixCache() => _pool.ResetPrefixCache();

    private sealed class HostEvictionRelay(HostTier tier) : IBlockEvictionSink
    {
        public void OnEvict(int block, BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds) =>
            tier.Lower?.OnEvicted(key, parent, tokenIds, EvictedPayload.InHost(tier._store.Payload(block)));
    }
}
