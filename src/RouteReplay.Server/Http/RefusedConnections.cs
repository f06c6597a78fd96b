using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;

namespace RouteReplay.Server.Http;

/// <summary>
/// Counts the connections one server's Kestrel refused because <see cref="ConnectionLimits.MaxConnections"/> were open
/// (Kestrel's <c>kestrel.rejected_connections</c>, from this server's meters only), and logs it at most once every
/// <see cref="LogInterval"/>.
/// </summary>
internal sealed class RefusedConnections : IDisposable
{
    public static readonly TimeSpan LogInterval = TimeSpan.FromSeconds(10);

    private const string KestrelMeter = "Microsoft.AspNetCore.Server.Kestrel";
    private const string RejectedInstrument = "kestrel.rejected_connections";

    private readonly MeterListener _listener = new();
    private readonly ILogger _logger;
    private readonly ConnectionLimits _limits;
    private long _count;
    private long _loggedAt = long.MinValue;
    private long _countLogged;

    public RefusedConnections(IMeterFactory meters, ILogger logger, ConnectionLimits limits)
    {
        _logger = logger;
        _limits = limits;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == KestrelMeter && instrument.Name == RejectedInstrument && ReferenceEquals(instrument.Meter.Scope, meters))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((_, value, _, _) => Add(value));
        _listener.Start();
    }

    /// <summary>Connections refused since the server started.</summary>
    public long Count => Interlocked.Read(ref _count);

    private void Add(long value)
    {
        var total = Interlocked.Add(ref _count, value);
        var now = Stopwatch.GetTimestamp();
        var last = Interlocked.Read(ref _loggedAt);
        if ((last == long.MinValue || Stopwatch.GetElapsedTime(last, now) >= LogInterval) && Interlocked.CompareExchange(ref _loggedAt, now, last) == last)
        {
            var since = total - Interlocked.Exchange(ref _countLogged, total);
            _logger.LogWarning(
                "Refused {Refused} connections ({Total} since start): {Limit} connections are open, the most the open-files limit of {OpenFiles} allows; idle ones close after {KeepAlive} s",
                since,
                total,
                _limits.MaxConnections,
                _limits.OpenFilesLimit,
                _limits.KeepAlive.TotalSeconds);
        }
    }

    public void Dispose() => _listener.Dispose();
}
