using System.Text.Json;
using RouteReplay.Disaggregation;

namespace RouteReplay.Server.Disaggregation;

/// <summary>
/// What <c>/get_model_info</c> tells a router about a server's place in a fleet, beyond its role: which prefill
/// servers a decode server trusts (<c>prefill_trust</c>) and the public id of its cluster key (<c>cluster_key_id</c>),
/// so that a router can refuse at startup a fleet whose servers would never transfer.
/// </summary>
internal static class FleetInfo
{
    public static void Write(Utf8JsonWriter writer, EngineHost host)
    {
        if (host.Role == ServerRole.Decode)
        {
            writer.WriteString("prefill_trust", host.PrefillTrust.Mode);
        }
        if (host.Role != ServerRole.Both && host.Options.Disaggregation.ClusterKey is { } key)
        {
            writer.WriteString("cluster_key_id", key.Id);
        }
    }
}
