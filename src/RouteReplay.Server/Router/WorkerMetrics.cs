using System.Globalization;
using System.Text;
using static RouteReplay.Server.Metrics.PrometheusEndpoint;

namespace RouteReplay.Server.Router;

/// <summary>
/// The per-worker series of the router's <c>/metrics</c>: the router's own counts (requests, choices by reason,
/// retries, prompt blocks remembered), and each worker's prefix-cache figures as the worker itself counts them, read
/// from its <c>/metrics</c> when the router's is read (left out for a worker that does not answer within a second).
/// </summary>
internal sealed class WorkerMetrics(RouterOptions options, WorkerPool pool, HttpClient http)
{
    private static readonly TimeSpan ScrapeTimeout = TimeSpan.FromSeconds(1);

    /// <summary>The worker's own series the router passes on, under the name it passes them on as.</summary>
    private static readonly (string Worker, string Router, string Type, string Help)[] Passed =
    [
        ("routereplay_prompt_tokens_total", "routereplay_router_worker_prompt_tokens_total", "counter", "The worker's routereplay_prompt_tokens_total: prompt tokens of its ended requests."),
        ("routereplay_cached_prompt_tokens_total", "routereplay_router_worker_cached_prompt_tokens_total", "counter", "The worker's routereplay_cached_prompt_tokens_total: of those, the ones its prefix cache served."),
        ("routereplay_prefix_cache_hit_rate", "routereplay_router_worker_prefix_cache_hit_rate", "gauge", "The worker's routereplay_prefix_cache_hit_rate: cached over prompt tokens, since it started."),
    ];

    public async Task WriteAsync(StringBuilder text, CancellationToken cancellationToken)
    {
        var workers = pool.Snapshot;
        var figures = await Task.WhenAll(workers.Select(w => ScrapeAsync(w.Server, cancellationToken))).ConfigureAwait(false);
        Family(text, "routereplay_router_worker_requests_total", "counter", "Requests sent to the worker (a retried request counts on each worker it was sent to).");
        foreach (var worker in workers)
        {
            Sample(text, "routereplay_router_worker_requests_total", Labels(worker), worker.Requests);
        }
        Family(text, "routereplay_router_worker_choices_total", "counter", "Generation requests sent to the worker, by why it was chosen: cache_hit, least_loaded, balance (round_robin under --policy round_robin).");
        var reasons = options.Policy == WorkerPolicy.RoundRobin ? [ChoiceReason.RoundRobin] : new[] { ChoiceReason.CacheHit, ChoiceReason.LeastLoaded, ChoiceReason.Balance };
        foreach (var worker in workers)
        {
            foreach (var reason in reasons)
            {
                Sample(text, "routereplay_router_worker_choices_total", $"{Labels(worker)},reason=\"{ChoiceReasons.Name(reason)}\"", worker.Choices(reason));
            }
        }
        Family(text, "routereplay_router_worker_retries_total", "counter", "Requests the worker failed (unreachable, or died) before any of its answer reached the client, so they were sent to another worker.");
        foreach (var worker in workers)
        {
            Sample(text, "routereplay_router_worker_retries_total", Labels(worker), worker.Retries);
        }
        Family(text, "routereplay_router_worker_prefix_blocks", "gauge", "Prompt blocks the router remembers sending to the worker (at most --max-tree-size).");
        foreach (var worker in workers)
        {
            Sample(text, "routereplay_router_worker_prefix_blocks", Labels(worker), worker.Prefixes.Count);
        }
        foreach (var (name, passed, type, help) in Passed)
        {
            Family(text, passed, type, help);
            for (var i = 0; i < workers.Length; i++)
            {
                if (figures[i]?.TryGetValue(name, out var value) == true)
                {
                    text.Append(passed).Append('{').Append(Labels(workers[i])).Append("} ").Append(Number(value)).Append('\n');
                }
            }
        }
        var (prompt, cached) = (Total(figures, "routereplay_prompt_tokens_total"), Total(figures, "routereplay_cached_prompt_tokens_total"));
        Gauge(text, "routereplay_router_prefix_cache_hit_rate", "The workers' cached prompt tokens over their prompt tokens, added up over the workers that answered (since each started).", prompt == 0 ? 0 : cached / prompt);
    }

    private static double Total(Dictionary<string, double>?[] figures, string name) =>
        figures.Sum(f => f is not null && f.TryGetValue(name, out var value) ? value : 0);

    private static string Labels(Worker worker) => $"server=\"{worker.Server.Name}\"";

    private async Task<Dictionary<string, double>?> ScrapeAsync(Upstream server, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(ScrapeTimeout);
        try
        {
            var body = await http.GetStringAsync(server.Url("/metrics"), timeout.Token).ConfigureAwait(false);
            var figures = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var line in body.Split('\n'))
            {
                var space = line.IndexOf(' ', StringComparison.Ordinal);
                if (space > 0 && Passed.Any(p => line.AsSpan(0, space).SequenceEqual(p.Worker))
                    && double.TryParse(line.AsSpan(space + 1), NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
                {
                    figures[line[..space]] = value;
                }
            }
            return figures;
        }
        catch (Exception e) when (e is HttpRequestException || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            return null;
        }
    }
}
