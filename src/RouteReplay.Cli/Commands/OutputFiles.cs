using System.Text.Json;
using RouteReplay.Engine;
using RouteReplay.Routing;

namespace RouteReplay.Cli.Commands;

/// <summary>Writes what <c>generate</c> produced: routing <c>.npy</c> files, the results JSONL and the stats JSON.</summary>
internal static class OutputFiles
{
    public static void Write(List<(int Line, RequestResult Result)> results, RoutingFormat format, string? routingOut, string? routingDir, string? outputJsonl)
    {
        if (routingOut is not null && results[0].Result.Choices[0].Routing is { } single)
        {
            NpyFile.WriteRouting(routingOut, format, single.Data);
        }
        if (routingDir is not null)
        {
            Directory.CreateDirectory(routingDir);
            foreach (var (line, result) in results)
            {
                foreach (var choice in result.Choices)
                {
                    if (choice.Routing is { } routing)
                    {
                        NpyFile.WriteRouting(Path.Combine(routingDir, $"{line}-{choice.Index}.npy"), format, routing.Data);
                    }
                }
            }
        }
        if (outputJsonl is not null)
        {
            using var stream = File.Create(outputJsonl);
            foreach (var (line, result) in results)
            {
                foreach (var choice in result.Choices)
                {
                    WriteChoice(stream, line, result, choice);
                }
            }
        }
    }

    private static void WriteChoice(Stream stream, int line, RequestResult result, ChoiceResult choice)
    {
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteNumber("line", line);
            json.WriteNumber("choice", choice.Index);
            WriteIds(json, "prompt_token_ids", result.PromptTokenIds);
            WriteIds(json, "output_token_ids", choice.TokenIds);
            json.WriteString("text", choice.Text);
            json.WriteString("finish_reason", result.Error is null ? choice.FinishReason.ToString().ToLowerInvariant() : "error");
            if (result.Error is not null)
            {
                json.WriteString("error", result.Error.Message);
            }
            json.WriteStartObject("usage");
            json.WriteNumber("prompt_tokens", result.Usage.PromptTokens);
            json.WriteNumber("completion_tokens", choice.TokenIds.Count);
            json.WriteNumber("cached_tokens", result.Usage.CachedPromptTokens);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        stream.WriteByte((byte)'\n');
    }

    private static void WriteIds(Utf8JsonWriter json, string name, IReadOnlyList<int> ids)
    {
        json.WriteStartArray(name);
        foreach (var id in ids)
        {
            json.WriteNumberValue(id);
        }
        json.WriteEndArray();
    }

    public static void WriteStats(string path, LlmEngine engine, TimeSpan elapsed)
    {
        using var stream = File.Create(path);
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        var stats = engine.Stats;
        json.WriteStartObject();
        json.WriteNumber("steps", stats.Steps);
        json.WriteNumber("computed_tokens", stats.ComputedTokens);
        json.WriteNumber("prefix_cache_hit_tokens", stats.PrefixCacheHitTokens);
        json.WriteNumber("prompt_tokens", stats.PromptTokens);
        json.WriteNumber("generated_tokens", stats.GeneratedTokens);
        json.WriteNumber("peak_batched_tokens", stats.PeakBatchedTokens);
        json.WriteNumber("requests_finished", stats.RequestsFinished);
        json.WriteNumber("routing_integrity_failures", stats.RoutingIntegrityFailures);
        json.WriteNumber("blocks_total", engine.Pool.NumBlocks);
        json.WriteNumber("blocks_used", engine.Pool.UsedBlockCount);
        json.WriteNumber("blocks_free", engine.Pool.FreeBlockCount);
        json.WriteNumber("blocks_cached", engine.Pool.CachedBlockCount);
        json.WriteNumber("preemptions_swap", stats.PreemptionsBySwap);
        json.WriteNumber("preemptions_recompute", stats.PreemptionsByRecompute);
        json.WriteNumber("recomputed_tokens", stats.RecomputedTokens);
        var host = engine.HostTier;
        json.WriteNumber("blocks_swapped_out", host?.BlocksSwappedOut ?? 0);
        json.WriteNumber("blocks_swapped_in", host?.BlocksSwappedIn ?? 0);
        json.WriteNumber("blocks_demoted", host?.BlocksDemoted ?? 0);
        json.WriteNumber("blocks_promoted", host?.BlocksPromoted ?? 0);
        json.WriteNumber("host_blocks_total", host?.NumBlocks ?? 0);
        json.WriteNumber("host_blocks_used", host?.UsedBlockCount ?? 0);
        json.WriteNumber("host_blocks_cached", host?.CachedBlockCount ?? 0);
        json.WriteNumber("payload_bytes_per_block", engine.PayloadCopier.PayloadBytes);
        json.WriteNumber("routing_bytes_per_block", engine.PayloadCopier.RoutingBytes);
        WriteStoreStats(json, engine.StoreTier?.Stats);
        json.WriteNumber("elapsed_seconds", elapsed.TotalSeconds);
        json.WriteNumber("generated_tokens_per_second", stats.GeneratedTokens / Math.Max(elapsed.TotalSeconds, 1e-9));
        json.WriteEndObject();
    }

    private static void WriteStoreStats(Utf8JsonWriter json, Storage.StoreStats? store)
    {
        json.WriteNumber("kv_store_lookups", store?.Lookups ?? 0);
        json.WriteNumber("kv_store_hits", store?.Hits ?? 0);
        json.WriteNumber("kv_store_misses", store?.Misses ?? 0);
        json.WriteNumber("kv_store_corrupt", store?.Corrupt ?? 0);
        json.WriteNumber("kv_store_rejected", store?.Rejected ?? 0);
        json.WriteNumber("kv_store_errors", store?.Errors ?? 0);
        json.WriteNumber("kv_store_skipped_while_down", store?.SkippedWhileDown ?? 0);
        json.WriteNumber("kv_store_discarded", store?.Discarded ?? 0);
        json.WriteNumber("kv_store_writes", store?.Writes ?? 0);
        json.WriteNumber("kv_store_dropped_writes", store?.DroppedWrites ?? 0);
        json.WriteNumber("kv_store_failed_writes", store?.FailedWrites ?? 0);
        json.WriteNumber("kv_store_already_stored", store?.AlreadyStored ?? 0);
        json.WriteNumber("kv_store_bytes_written", store?.BytesWritten ?? 0);
        json.WriteNumber("kv_store_bytes_read", store?.BytesRead ?? 0);
        json.WriteNumber("kv_store_outages", store?.Outages ?? 0);
        json.WriteNumber("kv_store_load_seconds_sum", store?.LoadLatency.SumSeconds ?? 0);
        json.WriteNumber("kv_store_load_count", store?.LoadLatency.Count ?? 0);
        json.WriteStartObject("kv_store_nodes");
        foreach (var (name, node) in store?.Nodes.OrderBy(n => n.Key, StringComparer.Ordinal) ?? Enumerable.Empty<KeyValuePair<string, Storage.StoreNodeStats>>())
        {
            json.WriteStartObject(name);
            json.WriteBoolean("up", !node.IsDown);
            json.WriteNumber("hits", node.Hits);
            json.WriteNumber("misses", node.Misses);
            json.WriteNumber("errors", node.Errors);
            json.WriteNumber("skipped_while_down", node.SkippedWhileDown);
            json.WriteNumber("writes", node.Writes);
            json.WriteNumber("failed_writes", node.FailedWrites);
            json.WriteNumber("already_stored", node.AlreadyStored);
            json.WriteNumber("outages", node.Outages);
            json.WriteEndObject();
        }
        json.WriteEndObject();
    }
}
