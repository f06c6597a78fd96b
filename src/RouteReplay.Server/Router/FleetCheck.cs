using RouteReplay.Disaggregation;

namespace RouteReplay.Server.Router;

/// <summary>
/// The router's startup checks of the servers it was given, each failure one sentence naming the servers: the roles
/// they were given, one model, one weights version (else every transfer would be refused and every prompt computed on
/// the decode servers, or workers would answer one request differently), and cluster keys and trust that let transfers
/// happen at all; and the same checks of a worker that joins later.
/// </summary>
internal static class FleetCheck
{
    /// <summary>Learns the prefill servers' transfer addresses and weights versions.</summary>
    /// <exception cref="RouterStartException">The first problem found.</exception>
    public static void Apply(RouterOptions options, Upstream[] servers, ServerInfo[] infos)
    {
        for (var i = 0; i < servers.Length; i++)
        {
            var (server, info) = (servers[i], infos[i]);
            if (info.Role != server.RoleName)
            {
                throw new RouterStartException(WrongRole($"--{server.Flag} {server.Name}", server, info));
            }
            if (server.Role == ServerRole.Prefill)
            {
                server.Transfer = info.TransferPort is { } port ? new TransferEndpoint(server.BaseUri.IdnHost, port) : throw new RouterStartException($"--prefill {server.Name} announces no transfer_port");
            }
            server.WeightVersion = info.WeightVersion;
        }
        var named = servers.Zip(infos, (server, info) => (Server: server, Info: info)).ToArray();
        if (named.Select(s => s.Info.Model).Distinct().Count() > 1)
        {
            throw new RouterStartException($"the servers serve different models: {string.Join(", ", named.Select(s => $"{s.Server.Name} '{s.Info.Model}'"))}");
        }
        if (WeightsDiffer(servers) is { } difference)
        {
            throw new RouterStartException(options.Workers.Count > 0
                ? $"{difference}; workers of other weights answer one request with other tokens and routing: start every worker with the same weights (and --weights-version)"
                : $"{difference}; a prefill server refuses transfers to a decode server of other weights, so every prompt would be computed on the decode servers: start every server with the same weights (and --weights-version)");
        }
        if (options.Workers.Count == 0)
        {
            CheckKeys(options.ClusterKey, named);
        }
    }

    /// <summary>Why the server at <paramref name="joining"/> may not join <paramref name="workers"/> (serving <paramref name="model"/>), or null when it may.</summary>
    public static string? RefuseWorker(Upstream joining, ServerInfo info, string? model, IReadOnlyList<Upstream> workers)
    {
        if (info.Role != joining.RoleName)
        {
            return WrongRole(joining.Name, joining, info);
        }
        if (model is not null && info.Model != model)
        {
            return $"{joining.Name} serves the model '{info.Model}', the workers '{model}'";
        }
        var versions = workers.Select(w => w.WeightVersion).OfType<string>().Distinct(StringComparer.Ordinal).ToArray();
        return info.WeightVersion is { } version && versions.Length > 0 && !versions.Contains(version, StringComparer.Ordinal)
            ? $"{joining.Name} has weights version '{version}', the workers '{string.Join("', '", versions)}': update it to the workers' weights first (its /update_weights_from_disk)"
            : null;
    }

    private static string WrongRole(string named, Upstream server, ServerInfo info) =>
        $"{named} is a server with role '{info.Role ?? "unknown (not a RouteReplay server of this version?)"}'; start it with 'routereplay serve{(server.Role == ServerRole.Both ? "' (no --role)" : $" --role {server.RoleName}'")}";

    /// <summary>Null when every server that announced one has the same weights version; else a sentence naming each server's.</summary>
    public static string? WeightsDiffer(IEnumerable<Upstream> servers)
    {
        var known = servers.Where(s => s.WeightVersion is not null).ToArray();
        return known.Select(s => s.WeightVersion).Distinct(StringComparer.Ordinal).Count() <= 1
            ? null
            : $"the servers' weights versions differ: {string.Join(", ", known.Select(s => $"--{s.Flag} {s.Name} has '{s.WeightVersion}'"))}";
    }

    private static void CheckKeys(ClusterKey? routerKey, (Upstream Server, ServerInfo Info)[] servers)
    {
        foreach (var (server, info) in servers)
        {
            if (info.ClusterKeyId is not null && routerKey is null)
            {
                throw new RouterStartException($"--{server.RoleName} {server.Name} has a --cluster-key and the router none: give the router the same --cluster-key");
            }
            if (info.ClusterKeyId is { } other && routerKey is not null && other != routerKey.Id)
            {
                throw new RouterStartException($"--{server.RoleName} {server.Name} has another --cluster-key than the router: give the router and every server the same key");
            }
            if (server.Role == ServerRole.Decode && info.PrefillTrust == "none")
            {
                throw new RouterStartException($"--decode {server.Name} trusts no prefill server, so it would compute every prompt itself: give it the router's --cluster-key (or --prefill-peers)");
            }
        }
        var locked = servers.FirstOrDefault(s => s.Server.Role == ServerRole.Prefill && s.Info.ClusterKeyId is not null).Server;
        var open = servers.FirstOrDefault(s => s.Server.Role == ServerRole.Decode && s.Info.ClusterKeyId is null).Server;
        if (locked is not null && open is not null)
        {
            throw new RouterStartException($"--prefill {locked.Name} serves only transfers signed with its --cluster-key, and --decode {open.Name} has none: give every server the router's --cluster-key");
        }
    }
}
