using System.Runtime.InteropServices;

namespace RouteReplay.Cache;

/// <summary>
/// The host-memory tier: whole block payloads for swapped-out sequences and for prefix blocks demoted from the device
/// pool. Its blocks follow the same rules as the device pool's (a <see cref="BlockPool"/> without channels does the
/// bookkeeping): a swapped block is held by its sequence; a demoted block is cached and free, evicted least recently
/// demoted first when space is needed; a promotion is a verified prefix hit. A demoted block the tier evicts, or a
/// device block it has no room for, goes on to <see cref="Lower"/> (the block store), when there is one. Moves between
/// the device and this tier are asynchronous batched copies queued in the backend's order with forwards
/// (<see cref="PayloadCopier"/>); a host block's KV bytes are read on the host only after waiting for them.
/// </summary>
public sealed class HostTier : ILowerTier, IDisposable
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
        _store = new HostPayloadStore(numBlocks, copier.PayloadBytes, copier.AllocateHostBuffer);
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

    /// <summary>
    /// Copies the payloads of <paramref name="deviceBlocks"/> to new host blocks held by the caller, appended to
    /// <paramref name="hostBlocks"/> in order; the device blocks are not released.
    /// </summary>
    public void SwapOut(ReadOnlySpan<int> deviceBlocks, List<int> hostBlocks)
    {
        var first = hostBlocks.Count;
        foreach (var _ in deviceBlocks)
        {
            hostBlocks.Add(_pool.Allocate());
        }
        _copier.DeviceToHostAsync(deviceBlocks, _store, CollectionsMarshal.AsSpan(hostBlocks)[first..]);
        BlocksSwappedOut += deviceBlocks.Length;
    }

    /// <summary>One block of <see cref="SwapOut(ReadOnlySpan{int}, List{int})"/>; returns the host block that holds it.</summary>
    public int SwapOut(int deviceBlock)
    {
        var hostBlocks = new List<int>(1);
        SwapOut([deviceBlock], hostBlocks);
        return hostBlocks[0];
    }

    /// <summary>One block of <see cref="SwapIn(ReadOnlySpan{int}, ReadOnlySpan{int})"/>.</summary>
    public void SwapIn(int hostBlock, int deviceBlock) => SwapIn([hostBlock], [deviceBlock]);

    /// <summary>Copies swapped payloads into device blocks the caller allocated (same order), and frees the host blocks.</summary>
    public void SwapIn(ReadOnlySpan<int> hostBlocks, ReadOnlySpan<int> deviceBlocks)
    {
        _copier.HostToDeviceAsync(_store, hostBlocks, deviceBlocks);
        foreach (var hostBlock in hostBlocks)
        {
            _pool.Release(hostBlock);
        }
        BlocksSwappedIn += hostBlocks.Length;
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
        if (payload.DeviceBlock >= 0)
        {
            _copier.DeviceToHostAsync([payload.DeviceBlock], _store, [hostBlock]);
        }
        else
        {
            payload.CopyTo(_store.Payload(hostBlock));
        }
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
        _copier.HostToDeviceAsync(_store, [hostBlock], [deviceBlock]);
        _devicePool.Commit(deviceBlock, key, parent, tokenIds);
        _pool.Release(hostBlock);
        BlocksPromoted++;
        return true;
    }

    /// <summary>Drops every demoted key (flush, or new weights).</summary>
    public void ResetPrefixCache() => _pool.ResetPrefixCache();

    /// <summary>Frees the host memory.</summary>
    public void Dispose() => _store.Dispose();

    /// <summary>Offers an evicted host block to the lower tier, after waiting for any copy still writing its KV.</summary>
    private sealed class HostEvictionRelay(HostTier tier) : IBlockEvictionSink
    {
        public void OnEvict(int block, BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds)
        {
            if (tier.Lower is { } lower)
            {
                tier._copier.Synchronize();
                lower.OnEvicted(key, parent, tokenIds, EvictedPayload.InHost(tier._store.Payload(block)));
            }
        }
    }
}
