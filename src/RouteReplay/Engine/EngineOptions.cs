namespace RouteReplay.Engine;

/// <summary>How a running request gives up its blocks when a step cannot get the blocks it needs.</summary>
public enum PreemptionMode
{
    /// <summary>Swap when the host tier has room (free or evictable demoted blocks), else recompute.</summary>
    Auto,

    /// <summary>Copy the victim's payloads to the host tier; recompute only when it cannot hold them.</summary>
    Swap,

    /// <summary>Free the victim's blocks; recompute its tokens later, replaying its saved routing rows.</summary>
    Recompute,
}

/// <summary>Where the forward pass runs.</summary>
public enum ComputeDevice
{
    /// <summary>The fp32 CPU backend.</summary>
    Cpu,

    /// <summary>The bf16 CUDA backend (needs an NVIDIA GPU, its driver and the native library).</summary>
    Cuda,
}

/// <summary>When full blocks are written to the block store (<c>--kv-store-write</c>).</summary>
public enum KvStoreWriteMode
{
    /// <summary>As soon as a block is full and committed, and again on eviction if that write was lost.</summary>
    Through,

    /// <summary>Only when a cached block is evicted from the last memory tier.</summary>
    Evict,
}

/// <summary>
/// The engine's settings, validated once. CLI flags map to these one to one in kebab-case
/// (<c>--block-size</c>, <c>--num-blocks</c>, <c>--max-num-seqs</c>, ...).
/// </summary>
public sealed record EngineOptions
{
    /// <summary>Tokens per KV-cache block.</summary>
    public int BlockSize { get; init; } = 16;

    /// <summary>Size of the device KV pool in blocks; 0 sizes it to hold <see cref="MaxNumSeqs"/> requests of half the model length.</summary>
    public int NumBlocks { get; init; }

    /// <summary>Most sequences (choices) in one step.</summary>
    public int MaxNumSeqs { get; init; } = 64;

    /// <summary>Most tokens (prefill chunks plus decodes) in one step.</summary>
    public int MaxNumBatchedTokens { get; init; } = 1024;

    /// <summary>Most tokens (prompt plus output) of one sequence.</summary>
    public int MaxModelLen { get; init; } = 4096;

    public bool EnablePrefixCaching { get; init; } = true;

    /// <summary>Host-memory tier for swapped-out and demoted blocks, in GiB (allocated as used); 0 turns it off.</summary>
    public double SwapSpaceGiB { get; init; } = 4;

    public PreemptionMode PreemptionMode { get; init; } = PreemptionMode.Auto;

    /// <summary>Identifies the weights in block keys; null hashes the checkpoint's weight files.</summary>
    public string? WeightsVersion { get; init; }

    /// <summary>Where the forward runs.</summary>
    public ComputeDevice Device { get; init; } = ComputeDevice.Cpu;

    /// <summary>
    /// The fraction of the GPU's memory the CUDA backend may hold (weights, step buffers, KV cache); the KV cache gets
    /// what is left of it when <see cref="NumBlocks"/> is 0.
    /// </summary>
    public double GpuMemoryUtilization { get; init; } = 0.9;

    /// <summary>
    /// The CUDA backend launches every kernel of every step instead of replaying decode steps from CUDA graphs (the
    /// results are the same bits either way).
    /// </summary>
    public bool EnforceEager { get; init; }

    /// <summary>The CPU backend's pool size: <see cref="NumBlocks"/>, or when 0 enough for half the model length per sequence.</summary>
    /// <summary>The persistent block store: <c>file:DIR</c> or <c>redis://HOST:PORT[,HOST:PORT...]</c>; null for none.</summary>
    public string? KvStore { get; init; }

    /// <summary>File store size cap in GiB (least recently used values are deleted past it); 0 for none.</summary>
    public double KvStoreMaxGiB { get; init; } = 16;

    /// <summary>Redis values' time to live in seconds; 0 for none.</summary>
    public int KvStoreTtlSeconds { get; init; } = 86_400;

    public KvStoreWriteMode KvStoreWrite { get; init; } = KvStoreWriteMode.Through;

    /// <summary>How long one store read or write may take before it counts as a fault (and a miss).</summary>
    public int KvStoreTimeoutMs { get; init; } = 500;

    /// <summary>The longest wait in milliseconds between probes of a store that is down (waits double from 1 s up to it).</summary>
    public int KvStoreRetryMaxMs { get; init; } = 30_000;

    /// <summary>Store writes queued at most; more are dropped and counted, so a slow store never blocks a step.</summary>
    public int KvStoreQueueSize { get; init; } = 256;

    public int ResolvedNumBlocks => NumBlocks > 0 ? NumBlocks : Math.Max(MaxNumSeqs * BlocksFor(MaxModelLen) / 2, BlocksFor(MaxModelLen));

    public int BlocksFor(int tokens) => (tokens + BlockSize - 1) / BlockSize;

    /// <summary>Throws an <see cref="ArgumentException"/> naming the flag of the first invalid value.</summary>
    public EngineOptions Validate()
    {
        Require(BlockSize is >= 1 and <= 1024, "block-size", $"must be in 1..1024, got {BlockSize}");
        Require(NumBlocks >= 0, "num-blocks", $"must be >= 0 (0 = automatic), got {NumBlocks}");
        Require(MaxNumSeqs >= 1, "max-num-seqs", $"must be >= 1, got {MaxNumSeqs}");
        Require(MaxNumBatchedTokens >= 1, "max-num-batched-tokens", $"must be >= 1, got {MaxNumBatchedTokens}");
        Require(MaxModelLen >= 2, "max-model-len", $"must be >= 2, got {MaxModelLen}");
        Require(ResolvedNumBlocks >= 1, "num-blocks", "leaves no KV blocks");
        Require(double.IsFinite(SwapSpaceGiB) && SwapSpaceGiB is >= 0 and <= 4096, "swap-space", $"must be in 0..4096 GiB, got {SwapSpaceGiB}");
        Require(PreemptionMode != PreemptionMode.Swap || SwapSpaceGiB > 0, "preemption-mode", "swap needs --swap-space > 0");
        Require(double.IsFinite(GpuMemoryUtilization) && GpuMemoryUtilization is > 0 and <= 1, "gpu-memory-utilization", $"must be in (0, 1], got {GpuMemoryUtilization}");
        if (KvStore is not null)
        {
            Storage.BlockStoreSpec.Parse(KvStore);
            Require(EnablePrefixCaching, "kv-store", "needs prefix caching (drop --no-prefix-caching)");
        }
        Require(double.IsFinite(KvStoreMaxGiB) && KvStoreMaxGiB >= 0, "kv-store-max-gib", $"must be >= 0 (0 = no cap), got {KvStoreMaxGiB}");
        Require(KvStoreTtlSeconds >= 0, "kv-store-ttl-seconds", $"must be >= 0 (0 = no expiry), got {KvStoreTtlSeconds}");
        Require(KvStoreTimeoutMs is >= 1 and <= 600_000, "kv-store-timeout-ms", $"must be in 1..600000, got {KvStoreTimeoutMs}");
        Require(KvStoreRetryMaxMs is >= 1 and <= 3_600_000, "kv-store-retry-max-ms", $"must be in 1..3600000, got {KvStoreRetryMaxMs}");
        Require(KvStoreQueueSize is >= 1 and <= 1_000_000, "kv-store-queue-size", $"must be in 1..1000000, got {KvStoreQueueSize}");
        return this;
    }

    private static void Require(bool condition, string flag, string message)
    {
        if (!condition)
        {
            throw new ArgumentException($"--{flag} {message}", flag);
        }
    }
}
