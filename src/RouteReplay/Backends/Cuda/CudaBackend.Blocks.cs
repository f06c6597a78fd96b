namespace RouteReplay.Backends.Cuda;

/// <summary>
/// Block KV between the device cache and host memory: one contiguous range per block (every layer's K then V), so a
/// block moves in one DMA copy. The batched forms are queued on the step stream (host bytes valid after the next
/// synchronization); the per-block forms are complete on return and accept any host memory.
/// </summary>
public sealed partial class CudaBackend
{
    public unsafe void ReadBlockKv(int block, Span<byte> destination)
    {
        RequireBlock(block, destination.Length);
        fixed (byte* p = destination)
        {
            CudaNative.Check(CudaNative.ReadBlock(_model, block, p), $"copying block {block} to the host");
        }
    }

    public unsafe void WriteBlockKv(int block, ReadOnlySpan<byte> source)
    {
        RequireBlock(block, source.Length);
        fixed (byte* p = source)
        {
            CudaNative.Check(CudaNative.WriteBlock(_model, block, p), $"copying block {block} to the device");
        }
    }

    public unsafe void CopyBlocksToHost(ReadOnlySpan<int> blocks, ReadOnlySpan<nint> destinations)
    {
        RequirePairs(blocks.Length, destinations.Length);
        fixed (int* b = blocks)
        fixed (nint* d = destinations)
        {
            CudaNative.Check(CudaNative.CopyBlocksToHost(_model, b, d, blocks.Length), $"queuing {blocks.Length} block copies to the host");
        }
    }

    public unsafe void CopyBlocksToDevice(ReadOnlySpan<nint> sources, ReadOnlySpan<int> blocks)
    {
        RequirePairs(blocks.Length, sources.Length);
        fixed (int* b = blocks)
        fixed (nint* s = sources)
        {
            CudaNative.Check(CudaNative.CopyBlocksToDevice(_model, s, b, blocks.Length), $"queuing {blocks.Length} block copies to the device");
        }
    }

    public void Synchronize() => CudaNative.Check(CudaNative.Synchronize(_model), "waiting for the GPU");

    private void RequireBlock(int block, int bytes)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)block, (uint)NumBlocks, nameof(block));
        if (bytes < KvBytesPerBlock)
        {
            throw new ArgumentException($"a block's KV is {KvBytesPerBlock} bytes, the buffer {bytes}", nameof(bytes));
        }
    }

    private static void RequirePairs(int blocks, int addresses)
    {
        if (blocks != addresses)
        {
            throw new ArgumentException($"{blocks} blocks but {addresses} host addresses", nameof(addresses));
        }
    }
}
