namespace RouteReplay.Server.Router;

/// <summary>
/// How <c>routereplay router</c> listens and which servers it routes to. CLI flags map to these one to one in
/// kebab-case (<c>--prefill</c>, <c>--decode</c>, <c>--host</c>, <c>--port</c>, ...).
/// </summary>
public sealed record RouterOptions
{
    /// <summary>Base URLs of the prefill servers (<c>serve --role prefill</c>).</summary>
    public IReadOnlyList<Uri> PrefillServers { get; init; } = [];

    /// <summary>Base URLs of the decode servers (<c>serve --role decode</c>).</summary>
    public IReadOnlyList<Uri> DecodeServers { get; init; } = [];

    /// <summary>
    /// Base URLs of the workers of a data-parallel fleet (plain <c>serve</c> processes); more may join through
    /// <c>/add_worker</c>. Not with <see cref="PrefillServers"/> and <see cref="DecodeServers"/>.
    /// </summary>
    public IReadOnlyList<Uri> Workers { get; init; } = [];

    /// <summary>How a worker is chosen for each generation request (workers only).</summary>
    public WorkerPolicy Policy { get; init; } = WorkerPolicy.CacheAware;

    /// <summary>
    /// Cache-aware choice: the worker whose recent prefixes match a prompt best is passed over for the least loaded one
    /// when it has more than this many requests in flight beyond the least loaded one's (and more than
    /// <see cref="BalanceRelThreshold"/> times them). SGLang's <c>balance_abs_threshold</c>.
    /// </summary>
    public int BalanceAbsThreshold { get; init; } = 64;

    /// <summary>Cache-aware choice: see <see cref="BalanceAbsThreshold"/>. SGLang's <c>balance_rel_threshold</c>.</summary>
    public double BalanceRelThreshold { get; init; } = 1.5;

    /// <summary>Cache-aware choice: the most prompt blocks remembered per worker (the least recently used are forgotten first).</summary>
    public int MaxTreeSize { get; init; } = 1 << 16;

    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one (see <see cref="RouterServer.BaseAddress"/>).</summary>
    public int Port { get; init; } = 8000;

    /// <summary>Required of clients when set (as <c>Authorization: Bearer KEY</c>), and sent to every server.</summary>
    public string? ApiKey { get; init; }

    /// <summary>
    /// The secret shared with the servers (<c>--cluster-key</c>): the router signs with it the prefill addresses it
    /// names to a decode server, which uses them only then. Null: none (decode servers then need <c>--prefill-peers</c>).
    /// </summary>
    public RouteReplay.Disaggregation.ClusterKey? ClusterKey { get; init; }

    public long MaxRequestBodyBytes { get; init; } = 16 << 20;

    /// <summary>How long the router waits at startup for every server to answer.</summary>
    public TimeSpan StartupTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// On SIGTERM or Ctrl-C, how long requests in flight may finish; then the router has their decode servers abort
    /// them, so each ends as with <c>serve</c> (finish reason abort, its final chunk and routing, <c>[DONE]</c>).
    /// </summary>
    public TimeSpan ShutdownGracePeriod { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long an idle client connection (before its first request or between requests) stays open.</summary>
    public TimeSpan KeepAlive { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How often every server's <c>/health</c> is probed (a server that fails is tried last).</summary>
    public TimeSpan HealthInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Throws an <see cref="ArgumentException"/> naming the flag of the first invalid value.</summary>
    public RouterOptions Validate()
    {
        if (Workers.Count > 0)
        {
            Require(PrefillServers.Count + DecodeServers.Count == 0, "worker", "and --prefill/--decode cannot be mixed: give --worker URL for each plain serve (data-parallel), or --prefill URL and --decode URL for a prefill/decode fleet, not both");
            Require(ClusterKey is null, "cluster-key", "applies to --prefill/--decode only (workers take no transfers)");
            Require(BalanceAbsThreshold >= 0, "balance-abs-threshold", $"must be >= 0, got {BalanceAbsThreshold}");
            Require(double.IsFinite(BalanceRelThreshold) && BalanceRelThreshold >= 1, "balance-rel-threshold", $"must be a number >= 1, got {BalanceRelThreshold}");
            Require(MaxTreeSize >= 1, "max-tree-size", $"must be >= 1, got {MaxTreeSize}");
        }
        else
        {
            Require(PrefillServers.Count + DecodeServers.Count > 0, "worker", "is required at least once (the URL of a plain serve, for data-parallel serving), or else --prefill and --decode");
            Require(PrefillServers.Count > 0, "prefill", "is required at least once: the URL of a prefill server (serve --role prefill)");
            Require(DecodeServers.Count > 0, "decode", "is required at least once: the URL of a decode server (serve --role decode)");
        }
        foreach (var (flag, urls) in new[] { ("prefill", PrefillServers), ("decode", DecodeServers), ("worker", Workers) })
        {
            foreach (var url in urls)
            {
                Require(IsBaseUrl(url), flag, $"must be a server's base URL like http://127.0.0.1:8001, got '{url}'");
            }
        }
        var all = PrefillServers.Concat(DecodeServers).Concat(Workers).ToArray();
        var duplicate = all.GroupBy(u => u.ToString()).FirstOrDefault(g => g.Count() > 1);
        Require(duplicate is null, Workers.Count > 0 ? "worker" : "decode", $"names the server {duplicate?.Key} twice{(Workers.Count > 0 ? "" : " (a server has one role)")}");
        Require(Port is >= 0 and <= 65535, "port", $"must be in 0..65535, got {Port}");
        Require(Host == "localhost" || System.Net.IPAddress.TryParse(Host, out _), "host", $"must be an IP address or 'localhost', got '{Host}'");
        Require(ApiKey is null || ApiKey.Length > 0, "api-key", "must not be empty");
        Require(MaxRequestBodyBytes >= 1024, "max-request-body-bytes", $"must be >= 1024, got {MaxRequestBodyBytes}");
        Require(StartupTimeout > TimeSpan.Zero, "startup-timeout-seconds", "must be > 0");
        Require(ShutdownGracePeriod >= TimeSpan.Zero, "shutdown-grace-seconds", "must be >= 0");
        Require(KeepAlive > TimeSpan.Zero, "keep-alive-seconds", "must be > 0");
        return this;
    }

    /// <summary>True for a server's base URL: http or https, with no path or query.</summary>
    public static bool IsBaseUrl(Uri url) => url.IsAbsoluteUri && url.Scheme is "http" or "https" && url.PathAndQuery == "/";

    private static void Require(bool condition, string flag, string message)
    {
        if (!condition)
        {
            throw new ArgumentException($"--{flag} {message}", flag);
        }
    }
}
