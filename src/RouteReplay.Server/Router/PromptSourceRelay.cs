using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using RouteReplay.Server.Disaggregation;

namespace RouteReplay.Server.Router;

/// <summary>
/// What a decode server said about a relayed request's prompt, passed on to the client and acted on: the response
/// names the decode server (<see cref="FleetHeaders.DecodeServer"/>) and the prefill servers by their URLs; every
/// prefill server whose transfer failed is counted in <c>routereplay_router_upstream_failures_total</c> and probed at
/// once (a restarted server's new transfer port is re-learned before the next request); a decode server that ignored
/// the router's prefill servers is logged.
/// </summary>
internal sealed class PromptSourceRelay(RouterProbes probes, ILogger logger, CancellationToken stopping)
{
    private readonly RateLimitedLog _log = new(message => logger.LogWarning("{Message}", message), RateLimitedLog.DefaultInterval);

    /// <param name="named">The prefill servers the request named, with the transfer address it named each by.</param>
    public void Apply(HttpResponse response, Upstream decode, IReadOnlyList<(Upstream Server, string Address)> named)
    {
        response.Headers[FleetHeaders.DecodeServer] = decode.Name;
        Upstream? Find(string address) => named.FirstOrDefault(n => n.Address == address).Server;
        if (response.Headers[FleetHeaders.PrefillServer].ToString() is { Length: > 0 } source)
        {
            response.Headers[FleetHeaders.PrefillServer] = Find(source)?.Name ?? source;
        }
        if (response.Headers[FleetHeaders.PrefillFailed].ToString() is { Length: > 0 } failedList)
        {
            var failed = failedList.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            foreach (var address in failed)
            {
                if (Find(address) is { } prefill)
                {
                    prefill.CountTransferFailure();
                    probes.ProbeSoon(prefill, stopping);
                    _log.Write($"failed:{prefill.Name}", $"a transfer from prefill server {prefill.Name} to decode server {decode.Name} failed (see the decode server's log); probing the prefill server");
                }
            }
            response.Headers[FleetHeaders.PrefillFailed] = string.Join(",", failed.Select(a => Find(a)?.Name ?? a));
        }
        if (named.Count > 0 && response.Headers[FleetHeaders.PrefillIgnored].ToString() is { Length: > 0 } ignored)
        {
            _log.Write($"ignored:{decode.Name}", $"decode server {decode.Name} ignored the prefill servers the router named and computed the prompt itself: {ignored}");
        }
    }
}
