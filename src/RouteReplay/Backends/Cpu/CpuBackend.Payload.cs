using System.Runtime.InteropServices;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Backends.Cpu;

/// <summary>Block KV in and out of the CPU cache: per layer, K then V, each the block's contiguous slot range.</summary>
public sealed partial class CpuBackend
{
    public TensorDType KvDType => TensorDType.F32;

    public int KvBytesPerBlock => Config.NumHiddenLayers * 2 * BlockFloats * sizeof(float);

    private int BlockFloats => BlockSize * Config.NumKeyValueHeads * Config.HeadDim;

    public void ReadBlockKv(int block, Span<byte> destination)
    {
        var cache = LiveCache;
        var layerBytes = BlockFloats * sizeof(float);
        for (var layer = 0; layer < Config.NumHiddenLayers; layer++)
        {
            var offset = layer * 2 * layerBytes;
            MemoryMarshal.AsBytes(BlockRange(cache.Keys[layer], block)).CopyTo(destination[offset..]);
            MemoryMarshal.AsBytes(BlockRange(cache.Values[layer], block)).CopyTo(destination[(offset + layerBytes)..]);
        }
    }

    public void WriteBlockKv(int block, ReadOnlySpan<byte> source)
    {
        var cache = LiveCache;
        var layerBytes = BlockFloats * sizeof(float);
        for (var layer = 0; layer < Config.NumHiddenLayers; layer++)
        {
            var offset = layer * 2 * layerBytes;
            source.Slice(offset, layerBytes).CopyTo(MemoryMarshal.AsBytes(BlockRange(cache.Keys[layer], block)));
            source.Slice(offset + layerBytes, layerBytes).CopyTo(MemoryMarshal.AsBytes(BlockRange(cache.Values[layer], block)));
        }
    }

    private Span<float> BlockRange(float[] layerCache, int block) => layerCache.AsSpan(block * BlockFloats, BlockFloats);
}
