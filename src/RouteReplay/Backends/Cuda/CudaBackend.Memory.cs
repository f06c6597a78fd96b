namespace RouteReplay.Backends.Cuda;

/// <summary>
/// Giving device memory back to another process: the KV cache allocation is freed and allocated again at the same size;
/// the weights arena is freed after a copy into page-locked host memory (or without one), and allocated again at restore.
/// </summary>
public sealed partial class CudaBackend : IReleasableBackend
{
    public bool KvCacheReleased { get; private set; }

    public WeightsResidence Weights { get; private set; }

    public void ReleaseKvCache()
    {
        CudaNative.Check(CudaNative.KvRelease(_model), "releasing the KV cache");
        KvCacheReleased = true;
    }

    public void RestoreKvCache()
    {
        if (!KvCacheReleased)
        {
            return;
        }
        CudaNative.Check(CudaNative.KvAllocate(_model, NumBlocks), $"allocating the KV cache of {NumBlocks} blocks again");
        KvCacheReleased = false;
    }

    public void ReleaseWeights(bool keepHostCopy)
    {
        CudaNative.Check(CudaNative.WeightsRelease(_model, keepHostCopy ? 1 : 0), keepHostCopy ? "moving the weights to host memory" : "releasing the weights");
        Weights = keepHostCopy && Weights != WeightsResidence.Discarded ? WeightsResidence.HostCopy : WeightsResidence.Discarded;
    }

    public void RestoreWeights()
    {
        if (Weights == WeightsResidence.Discarded)
        {
            throw new InvalidOperationException("the weights were discarded; only new weights can replace them");
        }
        if (Weights == WeightsResidence.HostCopy)
        {
            CudaNative.Check(CudaNative.WeightsRestore(_model, copyBack: 1), "copying the weights back to the GPU");
            Weights = WeightsResidence.Resident;
        }
    }
}
