using System.Text;
using RouteReplay.Storage;
using static RouteReplay.Server.Metrics.PrometheusEndpoint;

namespace RouteReplay.Server.Metrics;

/// <summary>The block store's families of <c>/metrics</c>.</summary>
internal static class StoreMetricsText
{
    public static void Append(StringBuilder text, StoreStats stats)
    {
        Counter(text, "routereplay_kv_store_lookups_total", "Requests whose prefix missed device and host tiers and were looked up in the block store.", stats.Lookups);
        Family(text, "routereplay_kv_store_blocks_total", "counter", "Block store reads by outcome (every outcome but hit is a miss: the block is computed).");
        Sample(text, "routereplay_kv_store_blocks_total", "result=\"hit\"", stats.Hits);
        Sample(text, "routereplay_kv_store_blocks_total", "result=\"miss\"", stats.Misses);
        Sample(text, "routereplay_kv_store_blocks_total", "result=\"corrupt\"", stats.Corrupt);
        Sample(text, "routereplay_kv_store_blocks_total", "result=\"rejected\"", stats.Rejected);
        Sample(text, "routereplay_kv_store_blocks_total", "result=\"error\"", stats.Errors);
        Sample(text, "routereplay_kv_store_blocks_total", "result=\"skipped_down\"", stats.SkippedWhileDown);
        Sample(text, "routereplay_kv_store_blocks_total", "result=\"discarded\"", stats.Discarded);
        Family(text, "routereplay_kv_store_writes_total", "counter", "Block store writes by outcome.");
        Sample(text, "routereplay_kv_store_writes_total", "result=\"written\"", stats.Writes);
        Sample(text, "routereplay_kv_store_writes_total", "result=\"dropped\"", stats.DroppedWrites);
        Sample(text, "routereplay_kv_store_writes_total", "result=\"failed\"", stats.FailedWrites);
        Family(text, "routereplay_kv_store_bytes_total", "counter", "Encoded block values moved to and from the store.");
        Sample(text, "routereplay_kv_store_bytes_total", "direction=\"read\"", stats.BytesRead);
        Sample(text, "routereplay_kv_store_bytes_total", "direction=\"written\"", stats.BytesWritten);
        Counter(text, "routereplay_kv_store_outages_total", "Times the block store went from reachable to down.", stats.Outages);
        Gauge(text, "routereplay_kv_store_up", "1 while the block store answers, 0 while it is treated as down.", stats.IsDown ? 0 : 1);
        Gauge(text, "routereplay_kv_store_queued_writes", "Block store writes queued or in progress.", stats.QueuedWrites);
        Histogram(text, "routereplay_kv_store_load_seconds", "Duration of block store lookups, from the prefix miss to verified blocks.", stats.LoadLatency);
    }
}
