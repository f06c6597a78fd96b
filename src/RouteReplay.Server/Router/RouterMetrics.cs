using System.Collections.Concurrent;
using System.Text;
using Microsoft.AspNetCore.Http;
using RouteReplay.Server.Http;
using static RouteReplay.Server.Metrics.PrometheusEndpoint;

namespace RouteReplay.Server.Router;

/// <summary>The router's <c>/metrics</c>: its responses, retries, each server's load and health, and the workers' own series.</summary>
internal sealed class RouterMetrics(ConnectionLimits connections, RefusedConnections refused)
{
    private static readonly HashSet<string> Paths =
    [
        "/v1/completions", "/v1/chat/completions", "/generate", "/v1/models", "/get_model_info", "/update_weights_from_disk",
        "/flush_cache", "/abort_request", "/health", "/metrics", "/add_worker", "/remove_worker", "/list_workers",
    ];

    private readonly ConcurrentDictionary<(string Path, int Status), long> _responses = new();
    private long _retries;

    public void CountResponse(string path, int status) =>
        _responses.AddOrUpdate((Paths.Contains(path) ? path : "other", status), 1, static (_, n) => n + 1);

    /// <summary>A decode server that could not be reached (a worker that failed before answering), so the request went to the next one.</summary>
    public void CountRetry() => Interlocked.Increment(ref _retries);

    public async Task WriteAsync(HttpContext context, IReadOnlyList<Upstream> servers, WorkerMetrics? workers)
    {
        var text = new StringBuilder(2048);
        Family(text, "routereplay_router_responses_total", "counter", "Router responses by path and status code (a stream that failed after it started counts as 500 or 502, not 200).");
        foreach (var ((path, status), count) in _responses.OrderBy(p => p.Key))
        {
            Sample(text, "routereplay_router_responses_total", $"path=\"{path}\",code=\"{status}\"", count);
        }
        Counter(text, "routereplay_router_retries_total", "Requests sent to another decode server because the first could not be reached (to another worker because the first failed before answering).", Interlocked.Read(ref _retries));
        Family(text, "routereplay_router_outstanding_requests", "gauge", "Requests in flight per server (prefill: those it was chosen first for).");
        foreach (var server in servers)
        {
            Sample(text, "routereplay_router_outstanding_requests", Labels(server), server.Outstanding);
        }
        Family(text, "routereplay_router_server_up", "gauge", "1 while a server answers its health probes and connections.");
        foreach (var server in servers)
        {
            Sample(text, "routereplay_router_server_up", Labels(server), server.IsUp ? 1 : 0);
        }
        Family(text, "routereplay_router_upstream_failures_total", "counter", "Requests that could not reach a server or that it failed mid-answer, and (prefill) transfers from it that failed.");
        foreach (var server in servers)
        {
            Sample(text, "routereplay_router_upstream_failures_total", Labels(server), server.Failures);
        }
        if (workers is not null)
        {
            await workers.WriteAsync(text, context.RequestAborted).ConfigureAwait(false);
        }
        ConnectionCounts(text, "routereplay_router_connections", connections, refused.Count);
        context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        await context.Response.WriteAsync(text.ToString(), context.RequestAborted).ConfigureAwait(false);
    }

    private static string Labels(Upstream server) => $"role=\"{server.Flag}\",server=\"{server.Name}\"";
}
