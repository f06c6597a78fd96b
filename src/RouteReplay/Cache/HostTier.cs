using System.Runtime.InteropServices;

namespace RouteReplay.Cache;

/// <summary>
/// The host-memory tier: whole block payloads for swapped-out sequences and for prefix blocks demoted from the device
/// pool. Its blocks follow the same rules as the device pool's (a <see cref="BlockPool"/> without channels does the
/// bookkeeping): a swapped block is held by its sequence; a demoted block is cached and free, evicted least recently
/// demoted first when space is needed; a promotion is a verified prefix hit. Every move is an asynchronous batched
/// copy queued in the backend's order with forwards (<see cref="PayloadCopier"/>): a host block's KV bytes are
/// valid once the step that wrote them has finished.
/// </summary>
public sealed class HostTier : IBlockEvictionSink, IDisposable
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
        devicePool.EvictionSink = this;
    }

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

    /// <summary>Frees the host blocks of a swapped-out sequence that will not resume (aborted).</summary>
    public void Discard(ReadOnlySpan<int> hostBlocks) => _pool.ReleaseSequence(hostBlocks);

    /// <summary>Demotes an evicted device prefix block when the host tier has room and does not hold its key yet.</summary>
    public void OnEvict(int block, BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds)
    {
        if (!_pool.PrefixCachingEnabled || !_pool.CanAllocate(1) || _pool.Holds(key))
        {
            return;
        }
        var hostBlock = _pool.Allocate();
        _copier.DeviceToHostAsync([block], _store, [hostBlock]);
        _pool.Commit(hostBlock, key, parent, tokenIds);
        _pool.Release(hostBlock);
        BlocksDemoted++;
    }

    /// <summary>
    /// On a verified host hit, copies the payload into a newly allocated device block, indexes it there and returns
    /// it with one reference for the caller. The device pool must have a free block.
    /// </summary>
    public bool TryPromote(BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds, out int deviceBlock)
    {
        if (!_pool.TryHit(key, parent, tokenIds, out var hostBlock))
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
}
