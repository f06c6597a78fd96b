namespace RouteReplay;

/// <summary>
/// A log that a peer cannot flood: of the lines of one kind, at most one is written per interval; the next one
/// written says how many were left out since. Safe from any thread.
/// </summary>
public sealed class RateLimitedLog(Action<string> write, TimeSpan interval, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly Dictionary<string, (long WrittenAt, int Suppressed)> _kinds = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    /// <summary>The usual interval: one line of a kind per 10 seconds.</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(10);

    /// <summary>Writes <paramref name="message"/> unless a line of <paramref name="kind"/> was written within the interval.</summary>
    public void Write(string kind, string message)
    {
        var now = _time.GetTimestamp();
        int suppressed;
        lock (_lock)
        {
            if (_kinds.TryGetValue(kind, out var last) && _time.GetElapsedTime(last.WrittenAt, now) < interval)
            {
                _kinds[kind] = (last.WrittenAt, last.Suppressed + 1);
                return;
            }
            suppressed = last.Suppressed;
            _kinds[kind] = (now, 0);
        }
        write(suppressed == 0 ? message : $"{message} ({suppressed} more like it since the last such line were not logged)");
    }
}
