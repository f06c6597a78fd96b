namespace RouteReplay.Server.Router;

/// <summary>Why the router chose a worker for a request (the <c>reason</c> label of its metrics).</summary>
internal enum ChoiceReason
{
    CacheHit,
    LeastLoaded,
    Balance,
    RoundRobin,
}

internal static class ChoiceReasons
{
    public static string Name(ChoiceReason reason) => reason switch
    {
        ChoiceReason.CacheHit => "cache_hit",
        ChoiceReason.LeastLoaded => "least_loaded",
        ChoiceReason.Balance => "balance",
        _ => "round_robin",
    };
}

/// <summary>
/// A worker of a data-parallel fleet: its server, the prompts recently sent to it, and its counts: requests sent to
/// it, choices by reason, and requests retried elsewhere after it failed them before answering. What it remembers is
/// forgotten each time it goes down (it may come back restarted, its cache empty).
/// </summary>
internal sealed class Worker(Upstream server, int maxTreeSize)
{
    private readonly long[] _choices = new long[Enum.GetValues<ChoiceReason>().Length];
    private long _requests;
    private long _retries;
    private int _seenDowns;

    public Upstream Server { get; } = server;

    public RecentPrefixes Prefixes { get; } = new(maxTreeSize);

    public long Requests => Interlocked.Read(ref _requests);

    public long Retries => Interlocked.Read(ref _retries);

    public long Choices(ChoiceReason reason) => Interlocked.Read(ref _choices[(int)reason]);

    /// <summary>How many of the prompt's leading blocks this worker was sent recently (none while it is down).</summary>
    public int Match(PromptKey prompt)
    {
        ForgetIfRestarted();
        return Server.IsUp ? Prefixes.Match(prompt) : 0;
    }

    /// <summary>Counts a request sent to this worker, and remembers its prompt.</summary>
    public void Chosen(ChoiceReason reason, PromptKey? prompt)
    {
        Interlocked.Increment(ref _requests);
        Interlocked.Increment(ref _choices[(int)reason]);
        ForgetIfRestarted();
        if (prompt is not null)
        {
            Prefixes.Remember(prompt);
        }
    }

    /// <summary>Counts a request this worker failed before any of its answer reached the client.</summary>
    public void CountRetry() => Interlocked.Increment(ref _retries);

    private void ForgetIfRestarted()
    {
        var downs = Server.Downs;
        if (Volatile.Read(ref _seenDowns) != downs && Interlocked.Exchange(ref _seenDowns, downs) != downs)
        {
            Prefixes.Clear();
        }
    }
}
