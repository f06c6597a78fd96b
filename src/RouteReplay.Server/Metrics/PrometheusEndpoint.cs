using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.Http;
using RouteReplay.Engine;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.Metrics;

/// <summary><c>GET /metrics</c>: Prometheus text format 0.0.4, engine counters read between steps.</summary>
internal sealed class PrometheusEndpoint(EngineHost host, ConnectionLimits connections, RefusedConnections refused)
{
    private sealed record Snapshot(
        long Steps, long PromptTokens, long GeneratedTokens, long CachedTokens, long ComputedTokens, long RequestsFinished,
        long RequestsAborted, long IntegrityFailures, long RoutingBytes, int Waiting, int Running, int UsedBlocks, int FreeBlocks,
        int CachedBlocks, int NumBlocks, long HitBlocks, long Evictions, long PreemptionsBySwap, long PreemptionsByRecompute,
        long RecomputedTokens, int HostUsed, int HostCached, int HostTotal, long SwappedOut, long SwappedIn, long Demoted, long Promoted);

    public async Task HandleAsync(HttpContext context)
    {
        var s = await host.Engine.InvokeAsync(e => new Snapshot(
            e.Stats.Steps, e.Stats.PromptTokens, e.Stats.GeneratedTokens, e.Stats.CachedPromptTokens, e.Stats.ComputedTokens,
            e.Stats.RequestsFinished, e.Stats.RequestsAborted, e.Stats.RoutingIntegrityFailures, e.Stats.RoutingBytesReturned,
            e.WaitingCount, e.RunningCount, e.Pool.UsedBlockCount, e.Pool.FreeBlockCount, e.Pool.CachedBlockCount, e.Pool.NumBlocks,
            e.Pool.HitBlocks, e.Pool.Evictions, e.Stats.PreemptionsBySwap, e.Stats.PreemptionsByRecompute, e.Stats.RecomputedTokens,
            e.HostTier?.UsedBlockCount ?? 0, e.HostTier?.CachedBlockCount ?? 0, e.HostTier?.NumBlocks ?? 0,
            e.HostTier?.BlocksSwappedOut ?? 0, e.HostTier?.BlocksSwappedIn ?? 0, e.HostTier?.BlocksDemoted ?? 0, e.HostTier?.BlocksPromoted ?? 0)).WaitAsync(context.RequestAborted).ConfigureAwait(false);
        var text = new StringBuilder(4096);
        var m = host.Metrics;
        Family(text, "routereplay_requests_total", "counter", "Generation requests by how they ended (disconnected: the client went away first); each request the server tried to admit counts once.");
        foreach (var outcome in Enum.GetValues<RequestOutcome>())
        {
            Sample(text, "routereplay_requests_total", $"status=\"{outcome.ToString().ToLowerInvariant()}\"", m.Outcome(outcome));
        }
        Family(text, "routereplay_http_responses_total", "counter", "HTTP responses by status code.");
        foreach (var (code, count) in m.Responses)
        {
            Sample(text, "routereplay_http_responses_total", $"code=\"{code}\"", count);
        }
        Counter(text, "routereplay_prompt_tokens_total", "Prompt tokens of ended requests, once per request (not per choice).", s.PromptTokens);
        Counter(text, "routereplay_generation_tokens_total", "Generated tokens.", s.GeneratedTokens);
        Counter(text, "routereplay_cached_prompt_tokens_total", "Of those prompt tokens, the ones served from the prefix cache (the sum of usage.cached_tokens), once per request.", s.CachedTokens);
        Counter(text, "routereplay_computed_tokens_total", "Tokens run through the forward.", s.ComputedTokens);
        Gauge(text, "routereplay_prefix_cache_hit_rate", "routereplay_cached_prompt_tokens_total over routereplay_prompt_tokens_total (both per request, so at most 1).", s.PromptTokens == 0 ? 0 : (double)s.CachedTokens / s.PromptTokens);
        Family(text, "routereplay_blocks", "gauge", "KV blocks by tier and state.");
        Sample(text, "routereplay_blocks", "tier=\"device\",state=\"used\"", s.UsedBlocks);
        Sample(text, "routereplay_blocks", "tier=\"device\",state=\"free\"", s.FreeBlocks);
        Sample(text, "routereplay_blocks", "tier=\"device\",state=\"cached\"", s.CachedBlocks);
        Sample(text, "routereplay_blocks", "tier=\"device\",state=\"total\"", s.NumBlocks);
        Sample(text, "routereplay_blocks", "tier=\"host\",state=\"used\"", s.HostUsed);
        Sample(text, "routereplay_blocks", "tier=\"host\",state=\"cached\"", s.HostCached);
        Sample(text, "routereplay_blocks", "tier=\"host\",state=\"total\"", s.HostTotal);
        Counter(text, "routereplay_prefix_cache_hit_blocks_total", "Blocks reused from the prefix cache.", s.HitBlocks);
        Counter(text, "routereplay_evictions_total", "Cached blocks evicted for reuse.", s.Evictions);
        Family(text, "routereplay_preemptions_total", "counter", "Sequences preempted when a step could not get blocks, by mode.");
        Sample(text, "routereplay_preemptions_total", "mode=\"swap\"", s.PreemptionsBySwap);
        Sample(text, "routereplay_preemptions_total", "mode=\"recompute\"", s.PreemptionsByRecompute);
        Counter(text, "routereplay_recomputed_tokens_total", "Tokens computed again after a preemption by recompute.", s.RecomputedTokens);
        Family(text, "routereplay_block_moves_total", "counter", "Block payloads moved between tiers.");
        Sample(text, "routereplay_block_moves_total", "kind=\"swap_out\"", s.SwappedOut);
        Sample(text, "routereplay_block_moves_total", "kind=\"swap_in\"", s.SwappedIn);
        Sample(text, "routereplay_block_moves_total", "kind=\"demote\"", s.Demoted);
        Sample(text, "routereplay_block_moves_total", "kind=\"promote\"", s.Promoted);
        Counter(text, "routereplay_requests_aborted_total", "Requests aborted in the engine.", s.RequestsAborted);
        Counter(text, "routereplay_routing_bytes_returned_total", "Routing bytes assembled for responses (uint8/uint16 rows).", s.RoutingBytes);
        Counter(text, "routereplay_routing_wire_bytes_total", "Routing bytes written into responses before base64 (SGLang's int32 form is wider).", m.RoutingWireBytes);
        Counter(text, "routereplay_routing_integrity_failures_total", "Requests failed because a routing row was never written.", s.IntegrityFailures);
        if (host.Engine.Engine.StoreTier is { } store)
        {
            StoreMetricsText.Append(text, store.Stats);
        }
        if (host.Role != RouteReplay.Disaggregation.ServerRole.Both)
        {
            await DisaggregationMetricsText.AppendAsync(text, host, context.RequestAborted).ConfigureAwait(false);
        }
        Counter(text, "routereplay_steps_total", "Engine steps.", s.Steps);
        var (stepFailures, nonFinite) = await host.Engine.InvokeAsync(e => (e.Stats.StepFailures, e.Stats.NonFiniteRouterLogitFailures)).WaitAsync(context.RequestAborted).ConfigureAwait(false);
        Counter(text, "routereplay_step_failures_total", "Engine steps that threw; each failed its own requests and the engine kept serving.", stepFailures);
        Counter(text, "routereplay_nonfinite_router_logits_total", "Requests failed because a router saw logits that are not finite (NaN or infinite) for one of their tokens.", nonFinite);
        Gauge(text, "routereplay_waiting_requests", "Sequences waiting in the engine plus requests held by a weight update or by released memory.", s.Waiting + host.Gate.Waiting + host.Memory.Waiting);
        MemoryMetricsText.Append(text, host.Memory);
        Gauge(text, "routereplay_running_requests", "Sequences running in the engine.", s.Running);
        Gauge(text, "routereplay_admitted_choices", "Choices admitted by the server and not finished.", host.Admitted);
        Histogram(text, "routereplay_step_seconds", "Duration of engine steps.", host.Engine.StepTimes);
        ConnectionCounts(text, "routereplay_connections", connections, refused.Count + host.Transfers.RefusedConnections);
        context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        await context.Response.WriteAsync(text.ToString(), context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>The connection limit (when the open-files limit is known) and the connections refused at it.</summary>
    internal static void ConnectionCounts(StringBuilder text, string prefix, ConnectionLimits connections, long refused)
    {
        Counter(text, prefix + "_refused_total", "Connections closed at once because the connection limit was reached.", refused);
        if (connections.MaxConnections is { } max)
        {
            Gauge(text, prefix + "_max", "Connections admitted at once, derived from the open-files limit.", max);
        }
    }

    internal static void Histogram(StringBuilder text, string name, string help, StepTimeHistogram histogram)
    {
        Family(text, name, "histogram", help);
        for (var i = 0; i < StepTimeHistogram.BucketBounds.Count; i++)
        {
            Sample(text, name + "_bucket", $"le=\"{Number(StepTimeHistogram.BucketBounds[i])}\"", histogram.CumulativeCount(i));
        }
        Sample(text, name + "_bucket", "le=\"+Inf\"", histogram.CumulativeCount(StepTimeHistogram.BucketBounds.Count));
        text.Append(name).Append("_sum ").Append(Number(histogram.SumSeconds)).Append('\n');
        text.Append(name).Append("_count ").Append(histogram.Count.ToString(CultureInfo.InvariantCulture)).Append('\n');
    }

    internal static void Family(StringBuilder text, string name, string type, string help) =>
        text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n').Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');

    internal static void Counter(StringBuilder text, string name, string help, long value)
    {
        Family(text, name, "counter", help);
        text.Append(name).Append(' ').Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');
    }

    internal static void Gauge(StringBuilder text, string name, string help, double value)
    {
        Family(text, name, "gauge", help);
        text.Append(name).Append(' ').Append(Number(value)).Append('\n');
    }

    internal static void Sample(StringBuilder text, string name, string labels, long value) =>
        text.Append(name).Append('{').Append(labels).Append("} ").Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');

    internal static string Number(double value) => value.ToString("R", CultureInfo.InvariantCulture);
}
