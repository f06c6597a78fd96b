using System.Collections.Concurrent;

namespace RouteReplay.Server.Metrics;

/// <summary>What a request ended as, for <c>routereplay_requests_total{status=...}</c>.</summary>
public enum RequestOutcome
{
    Ok,
    Aborted,
    Error,
    Rejected,
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
