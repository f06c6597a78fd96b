using System.Collections.Concurrent;
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
    private long _alreadyStored;
    private readonly ConcurrentDictionary<string, StoreNodeStats> _nodes = new();

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

    /// <summary>Reads that failed or timed out (their node is then treated as down for a while).</summary>
    public long Errors => Interlocked.Read(ref _errors);

    /// <summary>Lookups that ended at a key whose node was down (nothing was sent to it).</summary>
    public long SkippedWhileDown => Interlocked.Read(ref _skippedWhileDown);

    /// <summary>Verified blocks not used: stale after a flush or weight update, or the device pool had no free block.</summary>
    public long Discarded => Interlocked.Read(ref _discarded);

    public long Writes => Interlocked.Read(ref _writes);

    /// <summary>Writes dropped because the write queue was full (steps never wait for the store).</summary>
    public long DroppedWrites => Interlocked.Read(ref _droppedWrites);

    /// <summary>Writes that failed, timed out, or were dropped while their node was down.</summary>
    public long FailedWrites => Interlocked.Read(ref _failedWrites);

    /// <summary>Writes not made because the store already held the value (another process or an earlier run wrote it).</summary>
    public long AlreadyStored => Interlocked.Read(ref _alreadyStored);

    public long BytesWritten => Interlocked.Read(ref _bytesWritten);

    public long BytesRead => Interlocked.Read(ref _bytesRead);

    /// <summary>Times a node of the store went from reachable to down.</summary>
    public long Outages => Interlocked.Read(ref _outages);

    /// <summary>Each node the store has been asked about, by name (see <see cref="IBlockStore.NodeOf"/>).</summary>
    public IReadOnlyDictionary<string, StoreNodeStats> Nodes => _nodes;

    /// <summary>Writes queued or in progress.</summary>
    public int QueuedWrites { get; internal set; }

    /// <summary>True while any node of the store is treated as down.</summary>
    public bool IsDown => _nodes.Values.Any(n => n.IsDown);

    /// <summary>Durations of store lookups, from the request's miss to its verified blocks.</summary>
    public StepTimeHistogram LoadLatency { get; } = new();

    internal void CountLookup() => Interlocked.Increment(ref _lookups);

    internal StoreNodeStats Node(string node) => _nodes.GetOrAdd(node, static _ => new StoreNodeStats());

    internal void CountHit(string node, int bytes)
    {
        Node(node).CountHit();
        Interlocked.Increment(ref _hits);
        Interlocked.Add(ref _bytesRead, bytes);
    }

    internal void CountMiss(string node)
    {
        Node(node).CountMiss();
        Interlocked.Increment(ref _misses);
    }

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

    internal void CountError(string node)
    {
        Node(node).CountError();
        Interlocked.Increment(ref _errors);
    }

    internal void CountSkipped(string node)
    {
        Node(node).CountSkipped();
        Interlocked.Increment(ref _skippedWhileDown);
    }

    internal void CountDiscarded(int blocks) => Interlocked.Add(ref _discarded, blocks);

    internal void CountWrite(string node, int bytes)
    {
        Node(node).CountWrite();
        Interlocked.Increment(ref _writes);
        Interlocked.Add(ref _bytesWritten, bytes);
    }

    internal void CountDroppedWrite() => Interlocked.Increment(ref _droppedWrites);

    internal void CountFailedWrite(string node)
    {
        Node(node).CountFailedWrite();
        Interlocked.Increment(ref _failedWrites);
    }

    internal void CountAlreadyStored(string node)
    {
        Node(node).CountAlreadyStored();
        Interlocked.Increment(ref _alreadyStored);
    }

    internal void CountOutage(string node)
    {
        Node(node).CountOutage();
        Interlocked.Increment(ref _outages);
    }
}
