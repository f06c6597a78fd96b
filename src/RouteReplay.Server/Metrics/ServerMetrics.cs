using System.Collections.Concurrent;

namespace RouteReplay.Server.Metrics;

/// <summary>
/// What a generation request ended as, for <c>routereplay_requests_total{status=...}</c>: every request the server
/// tried to admit counts once.
/// </summary>
public enum RequestOutcome
{
    Ok,

    /// <summary>Ended with finish reason abort (<c>/abort_request</c>, a weight update's <c>abort_all_requests</c>, shutdown).</summary>
    Aborted,

    Error,

    /// <summary>Refused: the waiting queue was full, or the engine refused its values.</summary>
    Rejected,

    /// <summary>The client went away before its answer was written; the request was aborted with it.</summary>
    Disconnected,
}

/// <summary>Server-side counters; the engine's own are read from the engine when <c>/metrics</c> is scraped.</summary>
public sealed class ServerMetrics
{
    private readonly long[] _outcomes = new long[Enum.GetValues<RequestOutcome>().Length];
    private readonly ConcurrentDictionary<int, long> _responses = new();
    private long _routingWireBytes;

    public void Count(RequestOutcome outcome) => Interlocked.Increment(ref _outcomes[(int)outcome]);

    public long Outcome(RequestOutcome outcome) => Interlocked.Read(ref _outcomes[(int)outcome]);

    public void CountResponse(int status) => _responses.AddOrUpdate(status, 1, static (_, n) => n + 1);

    public IEnumerable<KeyValuePair<int, long>> Responses => _responses.OrderBy(p => p.Key);

    /// <summary>Bytes of routing data (before base64) written into responses.</summary>
    public void AddRoutingBytes(long bytes) => Interlocked.Add(ref _routingWireBytes, bytes);

    public long RoutingWireBytes => Interlocked.Read(ref _routingWireBytes);
}
