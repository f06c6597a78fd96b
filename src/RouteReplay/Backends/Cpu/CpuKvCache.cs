using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Backends.Cpu;

/// <summary>
/// The paged KV cache in host memory, fp32: per layer, K of shape <c>[NumBlocks * BlockSize, KeyWidth]</c> and V of
/// <c>[NumBlocks * BlockSize, ValueWidth]</c> (<see cref="ModelConfig.KeyCacheWidth"/>; for MLA, K holds the latent
/// and RoPE key and V is empty). A block's rows for one layer are contiguous, so a block's payload is a fixed set of
/// contiguous ranges.
/// </summary>
internal sealed class CpuKvCache
{
    public CpuKvCache(ModelConfig config, int numBlocks, int blockSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numBlocks);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockSize);
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        KeyWidth = config.KeyCacheWidth;
        ValueWidth = config.ValueCacheWidth;
        var perLayer = (long)numBlocks * blockSize * KeyWidth;
        if (perLayer > Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(numBlocks), numBlocks, "the KV cache of one layer exceeds the largest array");
        }
        Keys = new float[config.NumHiddenLayers][];
        Values = new float[config.NumHiddenLayers][];
        for (var layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            Keys[layer] = GC.AllocateUninitializedArray<float>((int)perLayer, pinned: true);
            Values[layer] = GC.AllocateUninitializedArray<float>(numBlocks * blockSize * ValueWidth, pinned: true);
        }
    }

    public int NumBlocks { get; }

    public int BlockSize { get; }

    public int KeyWidth { get; }

    public int ValueWidth { get; }

    public float[][] Keys { get; }

    public float[][] Values { get; }

    /// <summary>Bytes of every layer's K and V arrays.</summary>
    public long Bytes => Keys.Sum(k => (long)k.Length * sizeof(float)) + Values.Sum(v => (long)v.Length * sizeof(float));

    public int SlotOf(ReadOnlySpan<int> blockTable, int position) => (blockTable[position / BlockSize] * BlockSize) + (position % BlockSize);
}
