using System.Text;
using RouteReplay.Backends;
using RouteReplay.Engine;
using static RouteReplay.Server.Metrics.PrometheusEndpoint;

namespace RouteReplay.Server.Metrics;

/// <summary>The families of <c>/metrics</c> about sharing the GPU with a trainer.</summary>
internal static class MemoryMetricsText
{
    public static void Append(StringBuilder text, MemoryOccupation memory)
    {
        var state = memory.State;
        Gauge(text, "routereplay_memory_sleeping", "1 while any GPU memory is released for another process (what /is_sleeping reports), else 0.", state.IsReleased ? 1 : 0);
        Family(text, "routereplay_memory_released", "gauge", "1 while the region's GPU memory is released for another process (/release_memory_occupation, /sleep).");
        Sample(text, "routereplay_memory_released", "region=\"weights\"", state.Released.HasFlag(MemoryRegions.Weights) ? 1 : 0);
        Sample(text, "routereplay_memory_released", "region=\"kv_cache\"", state.Released.HasFlag(MemoryRegions.KvCache) ? 1 : 0);
        Family(text, "routereplay_memory_weights", "gauge", "1 for where the weights are now: on the GPU, in host memory (released, level 1), or dropped (released, level 2, until new weights are loaded).");
        Sample(text, "routereplay_memory_weights", "state=\"resident\"", state.Weights == WeightsResidence.Resident ? 1 : 0);
        Sample(text, "routereplay_memory_weights", "state=\"host_copy\"", state.Weights == WeightsResidence.HostCopy ? 1 : 0);
        Sample(text, "routereplay_memory_weights", "state=\"discarded\"", state.Weights == WeightsResidence.Discarded ? 1 : 0);
        Counter(text, "routereplay_memory_releases_total", "Releases that gave GPU memory back (/release_memory_occupation, /sleep).", memory.Releases);
        Counter(text, "routereplay_memory_resumes_total", "Resumes that took GPU memory back (/resume_memory_occupation, /wake_up).", memory.Resumes);
        Counter(text, "routereplay_memory_wait_timeouts_total", "Requests answered 503 because the memory was not resumed within --sleep-wait-timeout-seconds (also counted as rejected).", memory.WaitTimeouts);
    }
}
