namespace RouteReplay.Storage;

/// <summary>Counters of one node of a block store (see <see cref="IBlockStore.NodeOf"/>), readable from any thread.</summary>
public sealed class StoreNodeStats
{
    private long _hits;
    private long _misses;
    private long _errors;
    private long _skippedWhileDown;
    private long _writes;
    private long _failedWrites;
    private long _alreadyStored;
    private long _outages;
    private volatile bool _isDown;

    /// <summary>Blocks read from this node and verified.</summary>
    public long Hits => Interlocked.Read(ref _hits);

    /// <summary>Lookups that ended at a key this node does not hold.</summary>
    public long Misses => Interlocked.Read(ref _misses);

    /// <summary>Reads from this node that failed or timed out.</summary>
    public long Errors => Interlocked.Read(ref _errors);

    /// <summary>Lookups that ended at a key of this node because it was down (nothing was sent to it).</summary>
    public long SkippedWhileDown => Interlocked.Read(ref _skippedWhileDown);

    public long Writes => Interlocked.Read(ref _writes);

    /// <summary>Writes to this node that failed, timed out, or were skipped while it was down.</summary>
    public long FailedWrites => Interlocked.Read(ref _failedWrites);

    /// <summary>Writes not made because this node already held the value.</summary>
    public long AlreadyStored => Interlocked.Read(ref _alreadyStored);

    /// <summary>Times this node went from reachable to down.</summary>
    public long Outages => Interlocked.Read(ref _outages);

    /// <summary>True from a fault until a probe of the node succeeds.</summary>
    public bool IsDown
    {
        get => _isDown;
        internal set => _isDown = value;
    }

    internal void CountHit() => Interlocked.Increment(ref _hits);

    internal void CountMiss() => Interlocked.Increment(ref _misses);

    internal void CountError() => Interlocked.Increment(ref _errors);

    internal void CountSkipped() => Interlocked.Increment(ref _skippedWhileDown);

    internal void CountWrite() => Interlocked.Increment(ref _writes);

    internal void CountFailedWrite() => Interlocked.Increment(ref _failedWrites);

    internal void CountAlreadyStored() => Interlocked.Increment(ref _alreadyStored);

    internal void CountOutage() => Interlocked.Increment(ref _outages);
}
