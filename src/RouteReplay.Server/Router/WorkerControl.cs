using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.Router;

/// <summary>
/// SGLang router's worker endpoints: <c>POST /add_worker?url=URL</c> (the worker must answer within the startup
/// timeout, as a plain <c>serve</c> of the workers' model and weights version), <c>POST /remove_worker?url=URL</c>
/// (its requests in flight finish there; no new one goes to it) and <c>GET /list_workers</c>. These are the only way,
/// besides <c>--worker</c>, that the router comes to connect to a server; with <c>--api-key</c> they need the key.
/// </summary>
internal sealed class WorkerControl(RouterOptions options, WorkerPool pool, HttpClient http, ILogger logger)
{
    public async Task AddAsync(HttpContext context)
    {
        var url = Url(context);
        var name = url.ToString().TrimEnd('/');
        if (pool.Find(name) is not null)
        {
            throw ApiException.BadRequest($"the router already routes to the worker {name}", "url");
        }
        var candidate = new Upstream(RouteReplay.Disaggregation.ServerRole.Both, url, 0, logger);
        ServerInfo info;
        try
        {
            info = (await new RouterDiscovery(http, options).RunAsync([candidate], context.RequestAborted).ConfigureAwait(false))[0];
        }
        catch (RouterStartException e)
        {
            throw new ApiException(502, e.Message, "url", "worker_unreachable");
        }
        if (FleetCheck.RefuseWorker(candidate, info, pool.Model, pool.Servers) is { } refusal)
        {
            throw ApiException.BadRequest(refusal, "url");
        }
        var server = pool.NewServer(url);
        server.WeightVersion = info.WeightVersion;
        if (!pool.TryAdd(server))
        {
            throw ApiException.BadRequest($"the router already routes to the worker {name}", "url");
        }
        pool.Model ??= info.Model;
        logger.LogInformation("Worker {Server} added ({Count} workers)", server.Name, pool.Snapshot.Length);
        await WriteAsync(context, $"added the worker {server.Name}").ConfigureAwait(false);
    }

    public async Task RemoveAsync(HttpContext context)
    {
        var name = Url(context).ToString().TrimEnd('/');
        if (pool.Remove(name) is null)
        {
            throw new ApiException(404, $"the router routes to no worker {name}", "url", "worker_not_found");
        }
        logger.LogInformation("Worker {Server} removed ({Count} workers)", name, pool.Snapshot.Length);
        await WriteAsync(context, $"removed the worker {name}").ConfigureAwait(false);
    }

    public Task ListAsync(HttpContext context) => WriteAsync(context, null);

    private static Uri Url(HttpContext context)
    {
        var text = context.Request.Query["url"].ToString();
        if (text.Length == 0)
        {
            throw ApiException.BadRequest("'url' is required: the worker's base URL, as ?url=http://HOST:PORT", "url");
        }
        return Uri.TryCreate(text, UriKind.Absolute, out var url) && RouterOptions.IsBaseUrl(url)
            ? url
            : throw ApiException.BadRequest($"'url' must be a server's base URL like http://127.0.0.1:8001, got '{text}'", "url");
    }

    /// <summary>The workers now (SGLang's <c>urls</c>, and each one's state), with <paramref name="message"/> when there is one.</summary>
    private async Task WriteAsync(HttpContext context, string? message)
    {
        var workers = pool.Snapshot;
        context.Response.ContentType = "application/json";
        using (var writer = new Utf8JsonWriter(context.Response.BodyWriter, JsonOutput.Options))
        {
            writer.WriteStartObject();
            if (message is not null)
            {
                writer.WriteBoolean("success", true);
                writer.WriteString("message", message);
            }
            writer.WriteStartArray("urls");
            foreach (var worker in workers)
            {
                writer.WriteStringValue(worker.Server.Name);
            }
            writer.WriteEndArray();
            writer.WriteStartArray("workers");
            foreach (var worker in workers)
            {
                writer.WriteStartObject();
                writer.WriteString("url", worker.Server.Name);
                writer.WriteBoolean("up", worker.Server.IsUp);
                writer.WriteNumber("outstanding_requests", worker.Server.Outstanding);
                writer.WriteNumber("requests", worker.Requests);
                writer.WriteString("weight_version", worker.Server.WeightVersion);
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
        }
        await context.Response.BodyWriter.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }
}
