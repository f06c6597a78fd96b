using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using RouteReplay.Cache;

namespace RouteReplay.Storage;

/// <summary>How a <see cref="BlockStoreTier"/> writes and waits.</summary>
/// <param name="WriteThrough">Write every full block as soon as it is committed (else only when evicted from the last tier).</param>
/// <param name="QueueCapacity">Writes queued at most; more are dropped and counted.</param>
/// <param name="Timeout">How long one read or write may take before it counts as a store fault.</param>
/// <param name="LongestRetryWait">The longest wait between probes of a store that is down.</param>
public sealed record StoreTierSettings(bool WriteThrough, int QueueCapacity, TimeSpan Timeout, TimeSpan LongestRetryWait);

/// <summary>
/// The last tier of the chain device pool, host tier, block store. Writes and reads run off the step thread: the
/// step thread only copies a payload out of its block (through the <see cref="PayloadCopier"/>) and queues it, or
/// starts a lookup and later, between steps, copies verified payloads into device blocks. Nothing here ever makes a
/// step wait for I/O: a full queue drops writes, and a store node that is down makes lookups of its keys misses.
/// </summary>
/// <remarks>
/// <para>Faults are tracked per store node (<see cref="IBlockStore.NodeOf"/>, see <see cref="StoreHealth"/>): a node
/// that is down is skipped without a request waiting for it, while the other nodes keep serving.</para>
/// <para>A block is written at most once: not when this process loaded it or saw it in the store, nor when the store
/// already holds it (<see cref="IBlockStore.ContainsAsync"/>, asked before each write), unless its stored value failed
/// verification.</para>
/// Threads: <see cref="OnEvicted"/>, <see cref="OfferCommitted"/>, <see cref="BeginLoad"/>, <see cref="AdmitCompletedLoads"/>,
/// <see cref="Reset"/> and <see cref="Fingerprint"/> belong to the step thread; the I/O runs on the thread pool.
/// </remarks>
public sealed partial class BlockStoreTier : ILowerTier, IDisposable
{
    private const int WriterCount = 4;
    private const int ReadWindow = 8;
    private const int RememberedKeys = 1 << 16;
    private static readonly TimeSpan DrainOnDispose = TimeSpan.FromSeconds(30);

    private readonly IBlockStore _store;
    private readonly PayloadCodec _codec;
    private readonly StoreTierSettings _settings;
    private readonly StoreHealth _health;
    private readonly Channel<WriteJob> _writes = Channel.CreateUnbounded<WriteJob>(new UnboundedChannelOptions { SingleWriter = true });
    private readonly Task[] _writers;
    private readonly ConcurrentQueue<StoreLoad> _completed = new();
    private readonly SemaphoreSlim _loadSignal = new(0);
    private readonly HashSet<BlockKey> _known = [];
    private readonly ConcurrentQueue<BlockKey> _unwritten = new();
    private readonly ConcurrentDictionary<BlockKey, byte> _overwrite = new();
    private readonly Queue<BlockKey> _knownOrder = new();
    private readonly List<int> _admitted = [];
    private int _queued;
    private long _epoch;
    private int _pendingLoads;
    private bool _disposed;

    public BlockStoreTier(IBlockStore store, PayloadLayout layout, StoreTierSettings settings, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(settings);
        _store = store;
        _codec = new PayloadCodec(layout);
        _settings = settings;
        _health = new StoreHealth(store, Stats, log ?? (message => Console.Error.WriteLine($"routereplay: {message}")), settings.LongestRetryWait, settings.Timeout);
        _writers = Enumerable.Range(0, WriterCount).Select(_ => Task.Run(WriteLoop)).ToArray();
    }

    public StoreStats Stats { get; } = new();

    public IBlockStore Store => _store;

    public PayloadLayout Layout => _codec.Layout;

    public bool WriteThrough => _settings.WriteThrough;

    /// <summary>The fingerprint written into new values and required of loaded ones; the engine sets it with the weights.</summary>
    public UInt128 Fingerprint { get; set; }

    /// <summary>
    /// Bumped by <see cref="Reset"/>: lookups started before it are discarded when they complete, and writes queued
    /// before it are not written.
    /// </summary>
    public long Epoch => Volatile.Read(ref _epoch);

    /// <summary>Lookups started and not yet admitted by <see cref="AdmitCompletedLoads"/>.</summary>
    public int PendingLoads => Volatile.Read(ref _pendingLoads);

    /// <summary>Called on an I/O thread whenever a lookup completes, so an idle step loop can wake up.</summary>
    public Action? LoadCompleted { get; set; }

    /// <summary>A committed full block (write-through mode): queued for the store unless this process already stored or loaded it.</summary>
    public void OfferCommitted(BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds, in EvictedPayload payload)
    {
        if (_settings.WriteThrough)
        {
            Queue(key, parent, tokenIds, payload);
        }
    }

    /// <summary>A block leaving the tier above: queued for the store unless this process already stored or loaded it.</summary>
    public void OnEvicted(BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds, in EvictedPayload payload) => Queue(key, parent, tokenIds, payload);

    /// <summary>
    /// Starts looking up the blocks holding <paramref name="tokenIds"/> (whole blocks) after <paramref name="parent"/>;
    /// <see cref="AdmitCompletedLoads"/> hands <paramref name="owner"/> back when it is done.
    /// </summary>
    public void BeginLoad(object owner, BlockKey parent, ReadOnlySpan<int> tokenIds)
    {
        var load = new StoreLoad(owner, Epoch, Fingerprint, parent, tokenIds, Layout.BlockSize) { StartedAt = Stopwatch.GetTimestamp() };
        Interlocked.Increment(ref _pendingLoads);
        Stats.CountLookup();
        _ = Task.Run(() => RunLoadAsync(load));
    }

    /// <summary>
    /// Between steps: copies the verified payloads of every completed lookup into free device blocks and indexes them
    /// there as cached free blocks (most recently freed, so evicted last), so the owners' admission finds them as
    /// device hits. A block the pool already holds is skipped (another request computed it meanwhile); a lookup from
    /// before a <see cref="Reset"/> is discarded; with no free device block the rest of the run is discarded. Adds the
    /// owners of the completed lookups to <paramref name="owners"/>.
    /// </summary>
    public void AdmitCompletedLoads(BlockPool pool, PayloadCopier copier, List<object> owners)
    {
        while (_completed.TryDequeue(out var load))
        {
            Interlocked.Decrement(ref _pendingLoads);
            owners.Add(load.Owner);
            try
            {
                if (load.Epoch != Epoch || load.Fingerprint != Fingerprint)
                {
                    Stats.CountDiscarded(load.Loaded);
                    continue;
                }
                AdmitVerifiedBlocks(load, pool, copier);
            }
            finally
            {
                load.DisposeValues();
            }
        }
    }

    /// <summary>
    /// Copies the run's verified payloads into at most <see cref="BlockPool.FreeBlockCount"/> newly allocated blocks
    /// (so none evicts another), commits them, then releases them last block first, so the run's first blocks are
    /// evicted last, as for any released sequence. Every verified block is remembered as stored, admitted or not.
    /// </summary>
    private void AdmitVerifiedBlocks(StoreLoad load, BlockPool pool, PayloadCopier copier)
    {
        _admitted.Clear();
        for (var b = 0; b < load.Loaded; b++)
        {
            Remember(load.Keys[b]);
        }
        for (var b = 0; b < load.Loaded; b++)
        {
            var key = load.Keys[b];
            if (pool.Holds(key))
            {
                continue;
            }
            if (!pool.CanAllocate(1))
            {
                Stats.CountDiscarded(load.Loaded - b);
                break;
            }
            var block = pool.Allocate();
            copier.HostToDevice(load.Values[b]!.Memory.Span[_codec.PayloadRange(Layout.BlockSize)], block);
            pool.Commit(block, key, load.Parents[b], load.BlockTokens(b));
            _admitted.Add(block);
        }
        pool.ReleaseSequence(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_admitted));
    }

    /// <summary>Blocks until a lookup has completed or <paramref name="timeout"/> passes; true when one is ready.</summary>
    public bool WaitForCompletedLoad(TimeSpan timeout)
    {
        if (!_completed.IsEmpty)
        {
            return true;
        }
        _loadSignal.Wait(timeout);
        return !_completed.IsEmpty;
    }

    /// <summary>After a flush or new weights: lookups in flight become stale, and every key may be stored again.</summary>
    public void Reset()
    {
        Interlocked.Increment(ref _epoch);
        _known.Clear();
        _knownOrder.Clear();
    }

    /// <summary>
    /// Deletes every value from the store, after a <see cref="Reset"/> on the step thread: waits (at most 30 s) for the
    /// writes already running, since those queued before the reset are no longer written, then clears the store, so
    /// nothing computed before the flush lands in it afterwards. Returns how many values were deleted.
    /// </summary>
    public async Task<long> ClearStoreAsync(CancellationToken cancellationToken)
    {
        await Task.Run(() => DrainWrites(DrainOnDispose), cancellationToken).ConfigureAwait(false);
        return await _store.ClearAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Waits until every queued write has finished, or <paramref name="timeout"/> passes; true when none is left.</summary>
    public bool DrainWrites(TimeSpan timeout)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (Volatile.Read(ref _queued) > 0)
        {
            if (Stopwatch.GetTimestamp() > deadline)
            {
                return false;
            }
            Thread.Sleep(5);
        }
        return true;
    }

    private void Queue(BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds, in EvictedPayload payload)
    {
        while (_unwritten.TryDequeue(out var failed))
        {
            _known.Remove(failed);
        }
        if (_disposed || !Remember(key))
        {
            return;
        }
        if (Interlocked.Increment(ref _queued) > _settings.QueueCapacity)
        {
            Interlocked.Decrement(ref _queued);
            _known.Remove(key);
            Stats.CountDroppedWrite();
            return;
        }
        Stats.QueuedWrites = Volatile.Read(ref _queued);
        var value = new PooledValue(_codec.EncodedLength(tokenIds.Length));
        payload.CopyTo(value.Memory.Span[_codec.PayloadRange(tokenIds.Length)]);
        var tokens = ArrayPool<int>.Shared.Rent(tokenIds.Length);
        tokenIds.CopyTo(tokens);
        _writes.Writer.TryWrite(new WriteJob(Epoch, new PayloadHeader(Fingerprint, key, parent), tokens, tokenIds.Length, value));
    }

    /// <summary>
    /// Adds <paramref name="key"/> to the keys this process stored, loaded or found in the store recently; false when it
    /// was there. A key whose write failed or was skipped while its node was down is forgotten again, so the block is
    /// offered anew when it is evicted.
    /// </summary>
    private bool Remember(BlockKey key)
    {
        if (!_known.Add(key))
        {
            return false;
        }
        _knownOrder.Enqueue(key);
        if (_knownOrder.Count > RememberedKeys)
        {
            _known.Remove(_knownOrder.Dequeue());
        }
        return true;
    }

    /// <summary>Lets queued writes finish (at most 30 s), then closes the store.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        DrainWrites(DrainOnDispose);
        _writes.Writer.TryComplete();
        Task.WaitAll(_writers, DrainOnDispose);
        _health.Dispose();
        _store.DisposeAsync().AsTask().Wait(DrainOnDispose);
    }
}
