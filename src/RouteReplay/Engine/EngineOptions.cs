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

    /// <summary>The CPU backend's pool size: <see cref="NumBlocks"/>, or when 0 enough for half the model length per sequence.</summary>
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
