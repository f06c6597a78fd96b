namespace RouteReplay.Server;

/// <summary>
/// How <c>routereplay serve</c> listens and admits requests. CLI flags map to these one to one in kebab-case
/// (<c>--host</c>, <c>--port</c>, <c>--api-key</c>, ...).
/// </summary>
public sealed record ServerOptions
{
    /// <summary>Checkpoint folder, as the user wrote it (relative to the working directory or not); reported as is by <c>/get_model_info</c>; its folder's name is the default model name.</summary>
    public required string ModelPath { get; init; }

    /// <summary>Address to bind: loopback unless told otherwise (<c>0.0.0.0</c> or <c>::</c> for every interface).</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one (see <see cref="RolloutServer.BaseAddress"/>).</summary>
    public int Port { get; init; } = 8000;

    /// <summary>When set, <c>/v1/*</c>, <c>/generate</c> and the control endpoints need <c>Authorization: Bearer KEY</c>.</summary>
    public string? ApiKey { get; init; }

    /// <summary>The model id clients name; null uses the checkpoint folder's name.</summary>
    public string? ServedModelName { get; init; }

    /// <summary>Choices that may wait beyond the <c>max-num-seqs</c> the engine runs at once; more get 503.</summary>
    public int MaxWaitingRequests { get; init; } = 1024;

    /// <summary>Largest request body in bytes; larger ones get 413.</summary>
    public long MaxRequestBodyBytes { get; init; } = 16 << 20;

    /// <summary>On SIGTERM or Ctrl-C, how long in-flight requests may run before they are aborted.</summary>
    public TimeSpan ShutdownGracePeriod { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long an idle connection (before its first request or between requests) stays open.</summary>
    public TimeSpan KeepAlive { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a request that arrives while the GPU memory is released (or being released) waits for a resume before
    /// it gets 503 with <c>Retry-After</c>; 0 refuses such requests at once.
    /// </summary>
    public TimeSpan SleepWaitTimeout { get; init; } = TimeSpan.FromSeconds(300);

    /// <summary>The weights version reported before any update (null: the hash of the weight files).</summary>
    public string? WeightVersion { get; init; }

    /// <summary>The server's part in a prefill/decode split (<c>--role</c> and the transfer flags).</summary>
    public RouteReplay.Disaggregation.DisaggregationOptions Disaggregation { get; init; } = new();

    public string ResolvedModelName => ServedModelName ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(ModelPath)));

    /// <summary>Throws an <see cref="ArgumentException"/> naming the flag of the first invalid value.</summary>
    public ServerOptions Validate()
    {
        Require(Port is >= 0 and <= 65535, "port", $"must be in 0..65535, got {Port}");
        Require(MaxWaitingRequests >= 0, "max-waiting-requests", $"must be >= 0, got {MaxWaitingRequests}");
        Require(MaxRequestBodyBytes >= 1024, "max-request-body-bytes", $"must be >= 1024, got {MaxRequestBodyBytes}");
        Require(ApiKey is null || ApiKey.Length > 0, "api-key", "must not be empty");
        Require(ServedModelName is null || ServedModelName.Length > 0, "served-model-name", "must not be empty");
        Require(Host == "localhost" || System.Net.IPAddress.TryParse(Host, out _), "host", $"must be an IP address or 'localhost', got '{Host}'");
        Require(ShutdownGracePeriod >= TimeSpan.Zero, "shutdown-grace-seconds", "must be >= 0");
        Require(KeepAlive > TimeSpan.Zero, "keep-alive-seconds", "must be > 0");
        Require(SleepWaitTimeout >= TimeSpan.Zero && SleepWaitTimeout <= TimeSpan.FromDays(1), "sleep-wait-timeout-seconds", $"must be in 0..86400, got {SleepWaitTimeout.TotalSeconds}");
        Disaggregation.Validate();
        return this;
    }

    private static void Require(bool condition, string flag, string message)
    {
        if (!condition)
        {
            throw new ArgumentException($"--{flag} {message}", flag);
        }
    }
}
