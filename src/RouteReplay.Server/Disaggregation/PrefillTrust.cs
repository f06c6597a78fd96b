using Microsoft.AspNetCore.Http;
using RouteReplay.Disaggregation;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.Disaggregation;

/// <summary>
/// A decode server's rule for the prefill servers a request names (<see cref="FleetHeaders.Prefill"/>): it connects
/// only to addresses its router signed with the cluster key, or to addresses on its <c>--prefill-peers</c> list. Any
/// other header is ignored (the prompt is computed here) with a rate-limited warning, so a client can never make the
/// server open a connection to an address of its choosing.
/// </summary>
public sealed class PrefillTrust(DisaggregationOptions options, RateLimitedLog log)
{
    /// <summary>How the server decides, as <c>/get_model_info</c>'s <c>prefill_trust</c> says: <c>cluster_key</c>, <c>prefill_peers</c>, both, or <c>none</c>.</summary>
    public string Mode => (options.ClusterKey is not null, options.PrefillPeers.Count > 0) switch
    {
        (true, true) => "cluster_key,prefill_peers",
        (true, false) => "cluster_key",
        (false, true) => "prefill_peers",
        _ => "none",
    };

    /// <summary>
    /// The addresses of <paramref name="http"/>'s header this server may connect to; empty, with the reason, when it
    /// may connect to none of them.
    /// </summary>
    /// <exception cref="ApiException">400 when a trusted header is not a list of <c>host:port</c>.</exception>
    public (IReadOnlyList<TransferEndpoint> Trusted, string? Ignored) Check(HttpRequest http)
    {
        var value = http.Headers[FleetHeaders.Prefill].ToString();
        var key = options.ClusterKey;
        var peers = options.PrefillPeers;
        if (key is null && peers.Count == 0)
        {
            return Ignore(http, "this decode server trusts no prefill server (give it the router's --cluster-key, or --prefill-peers)");
        }
        var signed = key is not null && key.IsSignedPrefillList(value, http.Headers[FleetHeaders.PrefillSignature].ToString());
        var named = Parse(value);
        if (signed)
        {
            return (named, null);
        }
        var allowed = named.Where(e => peers.Any(p => p.Port == e.Port && string.Equals(p.Host, e.Host, StringComparison.OrdinalIgnoreCase))).ToArray();
        if (allowed.Length == 0)
        {
            return Ignore(http, (key is null ? "" : "it is not signed with this server's --cluster-key and ")
                + (peers.Count == 0 ? "this server has no --prefill-peers" : "it names no address of --prefill-peers"));
        }
        if (allowed.Length < named.Length)
        {
            log.Write("untrusted-prefill", $"ignored {named.Length - allowed.Length} of the {named.Length} addresses in {FleetHeaders.Prefill} from {Client(http)}: not in --prefill-peers");
        }
        return (allowed, null);
    }

    private (IReadOnlyList<TransferEndpoint>, string) Ignore(HttpRequest http, string reason)
    {
        log.Write("untrusted-prefill", $"ignored the {FleetHeaders.Prefill} header of a request from {Client(http)}: {reason}; its prompt is computed here");
        return ([], reason);
    }

    private static string Client(HttpRequest http) => http.HttpContext.Connection.RemoteIpAddress?.ToString() ?? "a client";

    private static TransferEndpoint[] Parse(string value)
    {
        try
        {
            return [.. value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(TransferEndpoint.Parse)];
        }
        catch (FormatException e)
        {
            throw ApiException.BadRequest($"header {FleetHeaders.Prefill} must list prefill transfer addresses as host:port, comma-separated: {e.Message}", FleetHeaders.Prefill);
        }
    }
}
