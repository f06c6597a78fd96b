using RouteReplay.Engine;

namespace RouteReplay.Disaggregation;

/// <summary>What a server does in a prefill/decode split (<c>--role</c>).</summary>
public enum ServerRole
{
    /// <summary>Prefill and decode in one server: a plain <c>serve</c>.</summary>
    Both,

    /// <summary>Computes prompts for decode servers and sends their blocks over the transfer port.</summary>
    Prefill,

    /// <summary>Imports prompts' blocks from the prefill servers a router names, then decodes.</summary>
    Decode,
}

/// <summary>
/// A server's prefill/decode settings. CLI flags map to these one to one in kebab-case (<c>--role</c>,
/// <c>--transfer-port</c>, <c>--pd-fallback</c>, <c>--pd-connect-timeout-ms</c>, <c>--pd-transfer-timeout-ms</c>,
/// <c>--pd-hold-timeout-ms</c>, <c>--cluster-key</c>, <c>--prefill-peers</c>).
/// </summary>
public sealed record DisaggregationOptions
{
    public ServerRole Role { get; init; } = ServerRole.Both;

    /// <summary>Prefill role: the TCP port transfers are served on (0: any free port, announced by <c>/get_model_info</c>).</summary>
    public int TransferPort { get; init; }

    /// <summary>Decode role: what a request does when every prefill server it was given failed.</summary>
    public PrefillFallback Fallback { get; init; } = PrefillFallback.Local;

    /// <summary>Decode role: longest a connection and handshake with a prefill server may take.</summary>
    public int ConnectTimeoutMs { get; init; } = 2_000;

    /// <summary>
    /// Decode role: longest a prefill server may stay silent during a transfer (it sends heartbeats at a quarter of
    /// this while it computes or queues the prompt); past it the transfer fails.
    /// </summary>
    public int TransferTimeoutMs { get; init; } = 10_000;

    /// <summary>Prefill role: longest the blocks of a finished prefill are held for the decode server's acknowledgement.</summary>
    public int HoldTimeoutMs { get; init; } = 10_000;

    /// <summary>
    /// The secret shared with the router and the other servers. Decode role: the prefill addresses a request names are
    /// used only when the router signed them with it, and transfer requests are signed with it. Prefill role: a transfer
    /// request not signed with it is refused. Null: none.
    /// </summary>
    public ClusterKey? ClusterKey { get; init; }

    /// <summary>Decode role: prefill transfer addresses a request may name without the router's signature.</summary>
    public IReadOnlyList<TransferEndpoint> PrefillPeers { get; init; } = [];

    /// <summary>Throws an <see cref="ArgumentException"/> naming the flag of the first invalid value.</summary>
    public DisaggregationOptions Validate()
    {
        Require(TransferPort is >= 0 and <= 65535, "transfer-port", $"must be in 0..65535, got {TransferPort}");
        Require(ConnectTimeoutMs is >= 1 and <= 600_000, "pd-connect-timeout-ms", $"must be in 1..600000, got {ConnectTimeoutMs}");
        Require(TransferTimeoutMs is >= 4 and <= 600_000, "pd-transfer-timeout-ms", $"must be in 4..600000, got {TransferTimeoutMs}");
        Require(HoldTimeoutMs is >= 1 and <= 600_000, "pd-hold-timeout-ms", $"must be in 1..600000, got {HoldTimeoutMs}");
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
