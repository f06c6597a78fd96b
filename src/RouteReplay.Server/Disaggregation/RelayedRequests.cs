using System.Collections.Concurrent;
using Microsoft.AspNetCore.Http;
using RouteReplay.Engine;

namespace RouteReplay.Server.Disaggregation;

/// <summary>
/// The requests a router relayed to this decode server, by the router's id for each (<see cref="FleetHeaders.RelayId"/>),
/// so that a router shutting down can abort the ones still running by its own ids, whatever ids they have here.
/// </summary>
public sealed class RelayedRequests
{
    private readonly ConcurrentDictionary<string, string> _requestIds = new(StringComparer.Ordinal);

    /// <summary>Remembers <paramref name="requestId"/> under the request's relay id, if it has one, until its response ends.</summary>
    public void Track(HttpRequest http, string requestId)
    {
        var relayId = http.Headers[FleetHeaders.RelayId].ToString();
        if (relayId.Length is 0 or > 256)
        {
            return;
        }
        var entry = KeyValuePair.Create(relayId, requestId);
        _requestIds[relayId] = requestId;
        http.HttpContext.Response.RegisterForDispose(new Forget(_requestIds, entry));
    }

    /// <summary>Aborts the request <paramref name="rid"/> names: a running request of that id, else the one relayed under it.</summary>
    public bool Abort(LlmEngine engine, string rid) =>
        engine.Abort(rid) || (_requestIds.TryGetValue(rid, out var requestId) && engine.Abort(requestId));

    private sealed class Forget(ConcurrentDictionary<string, string> ids, KeyValuePair<string, string> entry) : IDisposable
    {
        public void Dispose() => ids.TryRemove(entry);
    }
}
