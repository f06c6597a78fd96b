using RouteReplay.Engine;

namespace RouteReplay.Backends.Cuda;

/// <summary>The limits the CUDA backend sizes its fixed step buffers and KV cache for.</summary>
/// <param name="NumBlocks">KV blocks; 0 sizes the cache from free device memory and <paramref name="GpuMemoryUtilization"/>.</param>
/// <param name="MaxLogitRows">Most tokens of one step that ask for logits; 0 means one per sequence.</param>
/// <param name="CudaGraphs">Replay decode steps from CUDA graphs (false: launch every kernel, as vLLM's enforce-eager).</param>
public sealed record CudaBackendOptions(
    int BlockSize = 16,
    int MaxNumBatchedTokens = 1024,
    int MaxNumSeqs = 64,
    int MaxModelLen = 4096,
    int NumBlocks = 0,
    double GpuMemoryUtilization = 0.9,
    int MaxLogitRows = 0,
    bool CudaGraphs = true)
{
    public static CudaBackendOptions From(EngineOptions options) => new(
        options.BlockSize, options.MaxNumBatchedTokens, options.MaxNumSeqs, options.MaxModelLen, options.NumBlocks, options.GpuMemoryUtilization,
        CudaGraphs: !options.EnforceEager);

    public int ResolvedMaxLogitRows => MaxLogitRows > 0 ? MaxLogitRows : MaxNumSeqs;

    public int MaxBlocksPerSequence => (MaxModelLen + BlockSize - 1) / BlockSize;
}
