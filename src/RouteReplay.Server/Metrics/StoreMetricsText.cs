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
        Sample(text, "routereplay_kv_store_writes_total", "result=\"already_stored\"", stats.AlreadyStored);
        Family(text, "routereplay_kv_store_bytes_total", "counter", "Encoded block values moved to and from the store.");
        Sample(text, "routereplay_kv_store_bytes_total", "direction=\"read\"", stats.BytesRead);
        Sample(text, "routereplay_kv_store_bytes_total", "direction=\"written\"", stats.BytesWritten);
        Counter(text, "routereplay_kv_store_outages_total", "Times a block store node went from reachable to down.", stats.Outages);
        Gauge(text, "routereplay_kv_store_up", "1 while every block store node answers, 0 while any is treated as down.", stats.IsDown ? 0 : 1);
        Gauge(text, "routereplay_kv_store_queued_writes", "Block store writes queued or in progress.", stats.QueuedWrites);
        AppendNodes(text, stats);
        Histogram(text, "routereplay_kv_store_load_seconds", "Duration of block store lookups, from the prefix miss to verified blocks.", stats.LoadLatency);
    }

    /// <summary>Per node (a Redis Cluster primary, or the whole store when it has one node): up, reads and writes by outcome.</summary>
    private static void AppendNodes(StringBuilder text, StoreStats stats)
    {
        var nodes = stats.Nodes.OrderBy(n => n.Key, StringComparer.Ordinal).Select(n => (Label: $"node=\"{LabelValue(n.Key)}\"", Stats: n.Value)).ToList();
        Family(text, "routereplay_kv_store_node_up", "gauge", "1 while the block store node answers, 0 while it is treated as down (its keys are misses, probed in the background).");
        foreach (var (label, node) in nodes)
        {
            Sample(text, "routereplay_kv_store_node_up", label, node.IsDown ? 0 : 1);
        }
        Family(text, "routereplay_kv_store_node_blocks_total", "counter", "Block store reads per node by outcome.");
        foreach (var (label, node) in nodes)
        {
            Sample(text, "routereplay_kv_store_node_blocks_total", label + ",result=\"hit\"", node.Hits);
            Sample(text, "routereplay_kv_store_node_blocks_total", label + ",result=\"miss\"", node.Misses);
            Sample(text, "routereplay_kv_store_node_blocks_total", label + ",result=\"error\"", node.Errors);
            Sample(text, "routereplay_kv_store_node_blocks_total", label + ",result=\"skipped_down\"", node.SkippedWhileDown);
        }
        Family(text, "routereplay_kv_store_node_writes_total", "counter", "Block store writes per node by outcome.");
        foreach (var (label, node) in nodes)
        {
            Sample(text, "routereplay_kv_store_node_writes_total", label + ",result=\"written\"", node.Writes);
            Sample(text, "routereplay_kv_store_node_writes_total", label + ",result=\"failed\"", node.FailedWrites);
            Sample(text, "routereplay_kv_store_node_writes_total", label + ",result=\"already_stored\"", node.AlreadyStored);
        }
        Family(text, "routereplay_kv_store_node_outages_total", "counter", "Times the block store node went from reachable to down.");
        foreach (var (label, node) in nodes)
        {
            Sample(text, "routereplay_kv_store_node_outages_total", label, node.Outages);
        }
    }

    private static string LabelValue(string value) => value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
}
