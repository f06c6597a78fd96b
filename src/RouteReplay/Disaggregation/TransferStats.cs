using RouteReplay.Engine;

namespace RouteReplay.Disaggregation;

/// <summary>How a transfer ended, for <c>routereplay_pd_transfers_total{result=...}</c>.</summary>
public enum TransferOutcome
{
    /// <summary>Every block arrived (decode) or was acknowledged (prefill).</summary>
    Ok,

    /// <summary>The peer died, stalled past the timeout, sent bad data or reported an error.</summary>
    Failed,

    /// <summary>The handshake refused the peer (another fingerprint, block size, KV dtype or channel table).</summary>
    Refused,

    /// <summary>Prefill side: the decode server never acknowledged within the hold timeout; the held blocks were freed.</summary>
    HoldTimeout,

    /// <summary>The decode side no longer wanted the blocks (its request was aborted).</summary>
    Cancelled,
}

/// <summary>Counters of one server's transfers (either role), safe to update and read from any thread.</summary>
public sealed class TransferStats
{
    private readonly long[] _outcomes = new long[Enum.GetValues<TransferOutcome>().Length];
    private long _bytesSent;
    private long _bytesReceived;
    private long _blocksSent;
    private long _blocksReceived;
    private long _active;
    private long _refusedConnections;

    /// <summary>Seconds from the request to the last block (decode side) or to the acknowledgement (prefill side).</summary>
    public StepTimeHistogram Latency { get; } = new();

    public long BytesSent => Interlocked.Read(ref _bytesSent);

    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    public long BlocksSent => Interlocked.Read(ref _blocksSent);

    public long BlocksReceived => Interlocked.Read(ref _blocksReceived);

    /// <summary>Transfers in progress.</summary>
    public long Active => Interlocked.Read(ref _active);

    public long Outcome(TransferOutcome outcome) => Interlocked.Read(ref _outcomes[(int)outcome]);

    /// <summary>Prefill side: transfer connections closed at once because <see cref="TransferServer.MaxConnections"/> were open.</summary>
    public long RefusedConnections => Interlocked.Read(ref _refusedConnections);

    internal void RefusedConnection() => Interlocked.Increment(ref _refusedConnections);

    internal void Began() => Interlocked.Increment(ref _active);

    internal void Ended(TransferOutcome outcome, TimeSpan? latency = null)
    {
        Interlocked.Decrement(ref _active);
        Interlocked.Increment(ref _outcomes[(int)outcome]);
        if (latency is { } elapsed)
        {
            Latency.Record(elapsed);
        }
    }

    internal void Sent(long bytes, bool block)
    {
        Interlocked.Add(ref _bytesSent, bytes);
        if (block)
        {
            Interlocked.Increment(ref _blocksSent);
        }
    }

    internal void Received(long bytes, bool block)
    {
        Interlocked.Add(ref _bytesReceived, bytes);
        if (block)
        {
            Interlocked.Increment(ref _blocksReceived);
        }
    }
}
