using RouteReplay.Engine;

namespace RouteReplay.Storage;

/// <summary>Counters of a block store tier, updated from the I/O tasks and the step thread, readable from any thread.</summary>
public sealed class StoreStats
{
    private long _lookups;
    private long _hits;
    private long _misses;
    private long _corrupt;
    private long _rejected;
    private long _errors;
    private long _skippedWhileDown;
    private long _discarded;
    private long _writes;
    private long _droppedWrites;
    private long _failedWrites;
    private long _bytesWritten;
    private long _bytesRead;
    private long _outages;

    /// <summary>Requests whose prefix missed the device and host tiers and were looked up in the store.</summary>
    public long Lookups => Interlocked.Read(ref _lookups);

    /// <summary>Blocks read and verified (checksum, fingerprint, layout, key, parent key, token ids).</summary>
    public long Hits => Interlocked.Read(ref _hits);

    /// <summary>Lookups that ended at a key the store does not hold.</summary>
    public long Misses => Interlocked.Read(ref _misses);

    /// <summary>Values that failed their checksum or framing: never used, counted as misses.</summary>
    public long Corrupt => Interlocked.Read(ref _corrupt);

    /// <summary>Whole values of another block, model fingerprint or layout: never used, counted as misses.</summary>
    public long Rejected => Interlocked.Read(ref _rejected);

    /// <summary>Reads that failed or timed out (the store is then treated as down for a while).</summary>
    public long Errors => Interlocked.Read(ref _errors);

    /// <summary>Lookups not tried because the store was down.</summary>
    public long SkippedWhileDown => Interlocked.Read(ref _skippedWhileDown);

    /// <summary>Verified blocks not used: stale after a flush or weight update, or the device pool had no free block.</summary>
    public long Discarded => Interlocked.Read(ref _discarded);

    public long Writes => Interlocked.Read(ref _writes);

    /// <summary>Writes dropped because the write queue was full (steps never wait for the store).</summary>
    public long DroppedWrites => Interlocked.Read(ref _droppedWrites);

    /// <summary>Writes that failed, timed out, or were dropped while the store was down.</summary>
    public long FailedWrites => Interlocked.Read(ref _failedWrites);

    public long BytesWritten => Interlocked.Read(ref _bytesWritten);

    public long BytesRead => Interlocked.Read(ref _bytesRead);

    /// <summary>Times the store went from reachable to down.</summary>
    public long Outages => Interlocked.Read(ref _outages);

    /// <summary>Writes queued or in progress.</summary>
    public int QueuedWrites { get; internal set; }

    public bool IsDown { get; internal set; }

    /// <summary>Durations of store lookups, from the request's miss to its verified blocks.</summary>
    public StepTimeHistogram LoadLatency { get; } = new();

    internal void CountLookup() => Interlocked.Increment(ref _lookups);

    internal void CountHit(int bytes)
    {
        Interlocked.Increment(ref _hits);
        Interlocked.Add(ref _bytesRead, bytes);
    }

    internal void CountMiss() => Interlocked.Increment(ref _misses);

    internal void CountCorrupt(int bytes)
    {
        Interlocked.Increment(ref _corrupt);
        Interlocked.Add(ref _bytesRead, bytes);
    }

    internal void CountRejected(int bytes)
    {
        Interlocked.Increment(ref _rejected);
        Interlocked.Add(ref _bytesRead, bytes);
    }

    internal void CountError() => Interlocked.Increment(ref _errors);

    internal void CountSkipped() => Interlocked.Increment(ref _skippedWhileDown);

    internal void CountDiscarded(int blocks) => Interlocked.Add(ref _discarded, blocks);

    internal void CountWrite(int bytes)
    {
        Interlocked.Increment(ref _writes);
        Interlocked.Add(ref _bytesWritten, bytes);
    }

    internal void CountDroppedWrite() => Interlocked.Increment(ref _droppedWrites);

    internal void CountFailedWrite() => Interlocked.Increment(ref _failedWrites);

    internal void CountOutage() => Interlocked.Increment(ref _outages);
}
