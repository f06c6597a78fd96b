namespace RouteReplay.Storage;

/// <summary>
/// Whether the store is reachable. After a fault the store is down: operations are skipped (misses, dropped writes)
/// until a backoff passes, then one is let through as a probe; the backoff doubles from 1 s (or
/// <paramref name="longestBackoff"/> when shorter) up to <paramref name="longestBackoff"/> while probes fail, and
/// resets on the first success. Each change of state is logged once.
/// </summary>
internal sealed class StoreHealth(string description, StoreStats stats, Action<string> log, TimeSpan longestBackoff)
{
    private readonly TimeSpan _firstBackoff = TimeSpan.FromTicks(Math.Min(TimeSpan.TicksPerSecond, longestBackoff.Ticks));
    private readonly Lock _lock = new();
    private bool _down;
    private TimeSpan _backoff;
    private DateTime _retryAt;

    /// <summary>True when an operation should be tried now: the store is up, or the backoff has passed.</summary>
    public bool ShouldTry()
    {
        lock (_lock)
        {
            if (!_down || DateTime.UtcNow < _retryAt)
            {
                return !_down;
            }
            _retryAt = DateTime.UtcNow + _backoff;
            return true;
        }
    }

    public void ReportSuccess()
    {
        lock (_lock)
        {
            if (!_down)
            {
                return;
            }
            _down = false;
            _backoff = _firstBackoff;
            stats.IsDown = false;
        }
        log($"kv store {description} is reachable again");
    }

    public void ReportFailure(Exception error)
    {
        TimeSpan wait;
        bool wasUp;
        lock (_lock)
        {
            wasUp = !_down;
            _backoff = wasUp ? _firstBackoff : TimeSpan.FromTicks(Math.Min(_backoff.Ticks * 2, longestBackoff.Ticks));
            _down = true;
            wait = _backoff;
            _retryAt = DateTime.UtcNow + wait;
            stats.IsDown = true;
        }
        if (wasUp)
        {
            stats.CountOutage();
            log($"kv store {description} failed ({error.Message}); treating it as down, requests compute instead; retrying in {wait.TotalSeconds:F0} s");
        }
    }
}
