using System.Text;
using RouteReplay.Disaggregation;
using static RouteReplay.Server.Metrics.PrometheusEndpoint;

namespace RouteReplay.Server.Metrics;

/// <summary>The prefill/decode families of <c>/metrics</c>, on a prefill or decode server.</summary>
internal static class DisaggregationMetricsText
{
    private sealed record Snapshot(
        long RemotePrefills, long Failures, long Retries, long FallbacksLocal, long FallbacksError, long Imported, long ImportKept,
        long Exported, long ExportKept, int Importing, int Holding, int HeldBlocks);

    public static async Task AppendAsync(StringBuilder text, EngineHost host, CancellationToken cancellationToken)
    {
        var s = await host.Engine.InvokeAsync(e => new Snapshot(
            e.Stats.RemotePrefills, e.Stats.RemotePrefillFailures, e.Stats.PrefillRetries, e.Stats.PrefillFallbacksLocal, e.Stats.PrefillFallbacksError,
            e.Stats.ImportedBlocks, e.Stats.ImportKeptBlocks, e.Stats.ExportedBlocks, e.Stats.ExportKeptBlocks,
            e.ImportingRequests, e.HoldingExports, e.ExportHeldBlocks)).WaitAsync(cancellationToken).ConfigureAwait(false);
        var t = host.Transfers;
        Family(text, "routereplay_pd_role", "gauge", "This server's part in a prefill/decode split (1 on its role).");
        Sample(text, "routereplay_pd_role", $"role=\"{host.Role.ToString().ToLowerInvariant()}\"", 1);
        Family(text, "routereplay_pd_transfers_total", "counter", "Prompt-block transfers by how they ended (decode: received; prefill: sent and acknowledged).");
        foreach (var outcome in Enum.GetValues<TransferOutcome>())
        {
            Sample(text, "routereplay_pd_transfers_total", $"result=\"{Snake(outcome.ToString())}\"", t.Outcome(outcome));
        }
        Gauge(text, "routereplay_pd_active_transfers", "Transfers in progress.", t.Active);
        Family(text, "routereplay_pd_transfer_bytes_total", "counter", "Transfer frames' bytes, encoded block values included.");
        Sample(text, "routereplay_pd_transfer_bytes_total", "direction=\"sent\"", t.BytesSent);
        Sample(text, "routereplay_pd_transfer_bytes_total", "direction=\"received\"", t.BytesReceived);
        Family(text, "routereplay_pd_transfer_blocks_total", "counter", "Block payloads (KV and every channel) sent or received.");
        Sample(text, "routereplay_pd_transfer_blocks_total", "direction=\"sent\"", t.BlocksSent);
        Sample(text, "routereplay_pd_transfer_blocks_total", "direction=\"received\"", t.BlocksReceived);
        Histogram(text, "routereplay_pd_transfer_seconds", "Transfer duration: decode, request to last block; prefill, request to acknowledgement.", t.Latency);
        Counter(text, "routereplay_pd_remote_prefills_total", "Decode: requests whose prompt blocks were imported from a prefill server.", s.RemotePrefills);
        Counter(text, "routereplay_pd_import_failures_total", "Decode: imports that failed (a prefill server died, stalled, refused or sent bad data).", s.Failures);
        Family(text, "routereplay_pd_fallbacks_total", "counter", "Decode: what failed imports led to: a retry on the next prefill server, a local prefill, or a failed request.");
        Sample(text, "routereplay_pd_fallbacks_total", "kind=\"retry\"", s.Retries);
        Sample(text, "routereplay_pd_fallbacks_total", "kind=\"local\"", s.FallbacksLocal);
        Sample(text, "routereplay_pd_fallbacks_total", "kind=\"error\"", s.FallbacksError);
        Family(text, "routereplay_pd_blocks_total", "counter", "Block payloads copied in (imported) or out (exported) by the engine, and cached prompt blocks kept instead of sent.");
        Sample(text, "routereplay_pd_blocks_total", "kind=\"imported\"", s.Imported);
        Sample(text, "routereplay_pd_blocks_total", "kind=\"exported\"", s.Exported);
        Sample(text, "routereplay_pd_blocks_total", "kind=\"kept_on_decode\"", Math.Max(s.ImportKept, s.ExportKept));
        Gauge(text, "routereplay_pd_importing_requests", "Decode: requests waiting for their prompt blocks.", s.Importing);
        Gauge(text, "routereplay_pd_holding_transfers", "Prefill: finished prefills holding their blocks until the decode server acknowledges.", s.Holding);
        Gauge(text, "routereplay_pd_held_blocks", "Prefill: device blocks held for decode servers.", s.HeldBlocks);
    }

    private static string Snake(string name) => string.Concat(name.Select((c, i) => char.IsUpper(c) && i > 0 ? $"_{char.ToLowerInvariant(c)}" : $"{char.ToLowerInvariant(c)}"));
}
