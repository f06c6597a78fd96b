namespace RouteReplay.Backends.Cuda;

/// <summary>
/// How many KV blocks the GPU holds: the backend may use <c>utilization * total</c> bytes of device memory; what is
/// already in use (its weights and step buffers, the CUDA context, other processes) counts against that, and the KV
/// cache gets the rest, in whole blocks.
/// </summary>
internal static class KvCacheSizing
{
    public static int Blocks(ulong totalBytes, ulong freeBytes, double utilization, long bytesPerBlock)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytesPerBlock);
        var used = (double)(totalBytes - Math.Min(freeBytes, totalBytes));
        var budget = (utilization * totalBytes) - used;
        return budget <= 0 ? 0 : (int)Math.Min(int.MaxValue, Math.Floor(budget / bytesPerBlock));
    }

    /// <summary>The reason a pool of <paramref name="blocks"/> blocks cannot serve the engine, or null.</summary>
    public static string? Shortfall(int blocks, int neededForOneRequest, double utilization, ulong totalBytes, ulong freeBytes, long bytesPerBlock)
    {
        if (blocks >= neededForOneRequest)
        {
            return null;
        }
        const double GiB = 1 << 30;
        return $"--gpu-memory-utilization {utilization} leaves room for {blocks} KV blocks ({blocks * (double)bytesPerBlock / GiB:F2} GiB; " +
            $"{(totalBytes - freeBytes) / GiB:F1} of {totalBytes / GiB:F1} GiB are in use), fewer than the {neededForOneRequest} that one request of " +
            "--max-model-len needs; raise --gpu-memory-utilization or lower --max-model-len";
    }
}
