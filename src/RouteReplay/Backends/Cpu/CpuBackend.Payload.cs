using System.Runtime.InteropServices;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Backends.Cpu;

/// <summary>Block KV in and out of the CPU cache: per layer, K then V (empty for MLA), each the block's contiguous slot range.</summary>
public sealed partial class CpuBackend
{
    public TensorDType KvDType => TensorDType.F32;

    public int KvBytesPerBlock => Config.NumHiddenLayers * (KeyBlockFloats + ValueBlockFloats) * sizeof(float);

    private int KeyBlockFloats => BlockSize * Config.KeyCacheWidth;

    private int ValueBlockFloats => BlockSize * Config.ValueCacheWidth;

    public void ReadBlockKv(int block, Span<byte> destination)
    {
        var cache = LiveCache;
        int keyBytes = KeyBlockFloats * sizeof(float), valueBytes = ValueBlockFloats * sizeof(float);
        for (var layer = 0; layer < Config.NumHiddenLayers; layer++)
        {
            var offset = layer * (keyBytes + valueBytes);
            MemoryMarshal.AsBytes(BlockRange(cache.Keys[layer], block, KeyBlockFloats)).CopyTo(destination[offset..]);
            MemoryMarshal.AsBytes(BlockRange(cache.Values[layer], block, ValueBlockFloats)).CopyTo(destination[(offset + keyBytes)..]);
        }
    }

    public void WriteBlockKv(int block, ReadOnlySpan<byte> source)
    {
        var cache = LiveCache;
        int keyBytes = KeyBlockFloats * sizeof(float), valueBytes = ValueBlockFloats * sizeof(float);
        for (var layer = 0; layer < Config.NumHiddenLayers; layer++)
        {
            var offset = layer * (keyBytes + valueBytes);
            source.Slice(offset, keyBytes).CopyTo(MemoryMarshal.AsBytes(BlockRange(cache.Keys[layer], block, KeyBlockFloats)));
            source.Slice(offset + keyBytes, valueBytes).CopyTo(MemoryMarshal.AsBytes(BlockRange(cache.Values[layer], block, ValueBlockFloats)));
        }
    }

    private static Span<float> BlockRange(float[] layerCache, int block, int blockFloats) => layerCache.AsSpan(block * blockFloats, blockFloats);
}
