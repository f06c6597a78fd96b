using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using RouteReplay.Server.Disaggregation;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.Router;

/// <summary>
/// Relays a request to a worker and its answer back (<see cref="AnswerCopy"/>), the answer naming the worker
/// (<see cref="FleetHeaders.Worker"/>) and, for a generation request, why it was chosen (<see cref="FleetHeaders.Choice"/>).
/// A generation request goes to the worker <see cref="WorkerChooser"/> picks, with a relay id by which the router can
/// have the worker abort it; other requests (<c>/v1/models</c>, <c>/get_model_info</c>) to the least loaded worker.
/// Nothing goes to the client before the worker's first bytes: a worker that cannot be reached, or that fails (dies)
/// before then, has the request sent to another, until every worker was tried.
/// </summary>
internal sealed class WorkerProxy(RouterServer router, WorkerPool pool, WorkerChooser chooser, HttpClient http, ILogger logger)
{
    public Task GenerateAsync(HttpContext context) => RelayAsync(context, generation: true);

    public Task ForwardAsync(HttpContext context) => RelayAsync(context, generation: false);

    private async Task RelayAsync(HttpContext context, bool generation)
    {
        var body = await RouterProxy.ReadBodyAsync(context, router.Options.MaxRequestBodyBytes).ConfigureAwait(false);
        var prompt = generation && router.Options.Policy == WorkerPolicy.CacheAware ? PromptKey.Read(context.Request.Path.Value ?? "", body) : null;
        var relayId = RelayRegistry.NewId();
        (string, string)[] headers = [(FleetHeaders.RelayId, relayId)];
        var tried = new HashSet<Worker>();
        var failures = new List<string>();
        while ((generation ? chooser.Choose(pool.Snapshot, prompt, tried) : chooser.LeastLoaded(pool.Snapshot, tried)) is { } choice)
        {
            var (worker, reason) = choice;
            tried.Add(worker);
            if (generation)
            {
                worker.Chosen(reason, prompt);
            }
            var server = worker.Server;
            using var load = server.Enter();
            using var relayed = router.Relays.Enter(relayId, server);
            var failed = await TryAsync(context, server, body, headers, generation ? reason : null).ConfigureAwait(false);
            if (failed is null)
            {
                return;
            }
            failures.Add($"{server.Label}: {failed}");
            worker.CountRetry();
            router.Metrics.CountRetry();
            logger.LogWarning("worker {Server} failed {Method} {Path} before answering ({Reason}); trying another", server.Name, context.Request.Method, context.Request.Path, failed);
        }
        var error = tried.Count == 0
            ? new ApiException(503, "no worker to route to (add one with /add_worker)", null, "no_worker")
            : new ApiException(502, $"no worker could answer ({string.Join("; ", failures)})", null, "no_worker");
        RelayNotes.Of(context).Error = error.Message;
        throw error;
    }

    /// <summary>Null when the worker's answer was relayed; else why it failed before any of it reached the client.</summary>
    private async Task<string?> TryAsync(HttpContext context, Upstream server, byte[] body, (string, string)[] headers, ChoiceReason? reason)
    {
        HttpResponseMessage response;
        try
        {
            using var request = RouterProxy.BuildRequest(context, server, body, headers);
            response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, context.RequestAborted).ConfigureAwait(false);
        }
        catch (HttpRequestException e) when (!context.RequestAborted.IsCancellationRequested)
        {
            server.CountFailure(e.Message);
            return e.Message;
        }
        using (response)
        {
            server.MarkUp();
            return await AnswerCopy.RelayAsync(context, response, server, http =>
            {
                http.Headers[FleetHeaders.Worker] = server.Name;
                if (reason is { } chosen)
                {
                    http.Headers[FleetHeaders.Choice] = ChoiceReasons.Name(chosen);
                }
            }, holdUntilFirstByte: true).ConfigureAwait(false);
        }
    }
}
