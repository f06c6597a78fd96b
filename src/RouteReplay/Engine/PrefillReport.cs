namespace RouteReplay.Engine;

/// <summary>
/// What became of one request's remote prefill, as the decode engine decided it: the source whose blocks it ran on,
/// the sources that failed on the way, or why its prompt was computed here. Written on the step thread; safe to read
/// from any thread (a reader that has seen the request's first event sees the settled report).
/// </summary>
public sealed class PrefillReport
{
    private readonly Lock _lock = new();
    private readonly List<string> _failed = [];
    private string? _transferredFrom;
    private string? _localReason;

    /// <summary>The source whose blocks the request ran on; null when none did (yet).</summary>
    public string? TransferredFrom
    {
        get
        {
            lock (_lock)
            {
                return _transferredFrom;
            }
        }
    }

    /// <summary>Why the prompt was computed on the decode engine; null when it was not (yet).</summary>
    public string? LocalReason
    {
        get
        {
            lock (_lock)
            {
                return _localReason;
            }
        }
    }

    /// <summary>The sources that failed, in the order they were tried.</summary>
    public IReadOnlyList<string> Failed
    {
        get
        {
            lock (_lock)
            {
                return [.. _failed];
            }
        }
    }

    internal void Transferred(string source)
    {
        lock (_lock)
        {
            _transferredFrom = source;
        }
    }

    internal void SourceFailed(string source)
    {
        lock (_lock)
        {
            _failed.Add(source);
        }
    }

    internal void ComputedLocally(string reason)
    {
        lock (_lock)
        {
            _localReason = reason;
        }
    }
}
