namespace RouteReplay.Server.Disaggregation;

/// <summary>The headers a router and its decode servers exchange, and those they add to a response.</summary>
public static class FleetHeaders
{
    /// <summary>Request, router to decode server: the prefill servers' transfer addresses (<c>host:port</c>, comma-separated), the chosen one first.</summary>
    public const string Prefill = "X-RouteReplay-Prefill";

    /// <summary>Request, router to decode server: the cluster key's signature of <see cref="Prefill"/> (see <see cref="RouteReplay.Disaggregation.ClusterKey"/>).</summary>
    public const string PrefillSignature = "X-RouteReplay-Prefill-Signature";

    /// <summary>Request, router to decode server: the router's id of the request, which <c>/abort_request</c> takes as a <c>rid</c>.</summary>
    public const string RelayId = "X-RouteReplay-Relay-Id";

    /// <summary>Response of a decode server: <c>transferred</c> (its prompt's blocks came from a prefill server) or <c>local</c> (computed here).</summary>
    public const string Prompt = "X-RouteReplay-Prompt";

    /// <summary>Response: the prefill server the prompt came from (its transfer address; through a router, its URL).</summary>
    public const string PrefillServer = "X-RouteReplay-Prefill-Server";

    /// <summary>Response: the prefill servers whose transfer failed, in the order tried (as <see cref="PrefillServer"/>).</summary>
    public const string PrefillFailed = "X-RouteReplay-Prefill-Failed";

    /// <summary>Response of a decode server: why it did not use the <see cref="Prefill"/> header it was sent.</summary>
    public const string PrefillIgnored = "X-RouteReplay-Prefill-Ignored";

    /// <summary>Response of a router: the decode server that answered.</summary>
    public const string DecodeServer = "X-RouteReplay-Decode-Server";

    /// <summary>Response of a router over workers: the worker that answered.</summary>
    public const string Worker = "X-RouteReplay-Worker";

    /// <summary>Response of a router over workers: why it chose that worker (<c>cache_hit</c>, <c>least_loaded</c>, <c>balance</c>, <c>round_robin</c>).</summary>
    public const string Choice = "X-RouteReplay-Choice";

    public const string Transferred = "transferred";

    public const string Local = "local";
}
