namespace RouteReplay.Server.Http;

/// <summary>
/// How many connections a server admits at once, so the process never reaches its open-files limit: at that limit
/// the runtime cannot open what it loads lazily (assemblies, files under <c>/proc</c>) and the process dies. The
/// budget is the soft limit (raised to the hard limit at startup) less the files open when the server starts, less
/// <see cref="Reserve"/> for files opened later (assemblies loaded lazily, block store files and connections,
/// checkpoints), shared between client connections and the sockets a server opens or accepts on their behalf (prefill
/// transfers, the router's upstream connections). Connections past the limit are accepted and closed at once, and
/// counted; those already admitted go on.
/// </summary>
internal sealed record ConnectionLimits
{
    /// <summary>File descriptors kept free for files the process opens after it started.</summary>
    public const int Reserve = 256;

    /// <summary>The fewest client connections a server admits, however low the open-files limit.</summary>
    public const int Fewest = 16;

    /// <summary>How long a connection may take to send a request's headers once it has started one.</summary>
    public static readonly TimeSpan RequestHeadersTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The soft open-files limit in force, or null where the system has none (no connection limit then).</summary>
    public long? OpenFilesLimit { get; init; }

    /// <summary>The soft limit the process started with, before it was raised to the hard limit.</summary>
    public long? StartedWith { get; init; }

    /// <summary>Files open when the limits were derived.</summary>
    public int OpenAtStart { get; init; }

    /// <summary>Client connections admitted at once; null for no limit.</summary>
    public long? MaxConnections { get; init; }

    /// <summary>Sockets the server may hold besides client connections (transfers, upstream connections); null for no limit.</summary>
    public long? MaxOtherSockets { get; init; }

    /// <summary>How long an idle connection (before its first request or between requests) stays open.</summary>
    public TimeSpan KeepAlive { get; init; }

    /// <summary>True when the limit leaves less than <see cref="Fewest"/> connections and <see cref="Fewest"/> are admitted anyway.</summary>
    public bool BelowFewest { get; init; }

    /// <summary>
    /// Raises this process's soft open-files limit to its hard limit and derives the limits from it and the files open
    /// now. <paramref name="otherSockets"/>: whether each client connection may bring one more socket (half the budget
    /// goes to those).
    /// </summary>
    public static ConnectionLimits ForThisProcess(bool otherSockets, TimeSpan keepAlive) =>
        Derive(Http.OpenFilesLimit.RaiseSoftLimit(), Http.OpenFilesLimit.OpenNow() ?? Reserve, otherSockets, keepAlive);

    /// <summary>The limits for a soft limit <paramref name="limit"/> (null: none) with <paramref name="openNow"/> files open.</summary>
    public static ConnectionLimits Derive((long Before, long Now)? limit, int openNow, bool otherSockets, TimeSpan keepAlive)
    {
        if (limit is not { } known)
        {
            return new ConnectionLimits { OpenAtStart = openNow, KeepAlive = keepAlive };
        }
        var budget = Math.Max(0, known.Now - openNow - Reserve);
        var connections = otherSockets ? budget / 2 : budget;
        return new ConnectionLimits
        {
            OpenFilesLimit = known.Now,
            StartedWith = known.Before,
            OpenAtStart = openNow,
            MaxConnections = Math.Max(Fewest, connections),
            MaxOtherSockets = otherSockets ? Math.Max(Fewest, budget - connections) : 0,
            KeepAlive = keepAlive,
            BelowFewest = connections < Fewest,
        };
    }

    /// <summary>One line for the startup log.</summary>
    public string Describe()
    {
        var idle = $"idle connections close after {KeepAlive.TotalSeconds:0.###} s";
        if (OpenFilesLimit is not { } limit)
        {
            return $"Connections: no open-files limit known, so no connection limit; {idle}";
        }
        var raised = StartedWith is { } before && before != limit ? $", raised from {before}" : "";
        var others = MaxOtherSockets is > 0 ? $" and {MaxOtherSockets} transfer or upstream sockets" : "";
        return $"Connections: at most {MaxConnections} at once{others} (open-files limit {limit}{raised}; {OpenAtStart} files open at start, {Reserve} kept free); {idle}";
    }
}
