using System.Buffers;
using System.IO.Hashing;
using System.Text;

using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Model.Presets;

/// <summary>
/// Generates random bf16 weights reproducibly and in parallel. Each tensor is cut into fixed-size chunks; each
/// chunk has its own generator seeded from (seed, hash of the tensor name, chunk index), so the bytes depend on
/// neither the order of generation nor the number of threads.
/// </summary>
internal static class RandomWeightGenerator
{
    private const int ChunkElements = 1 << 16;

    public static IReadOnlyList<TensorToWrite> Generate(IReadOnlyList<WeightSpec> weights, ulong seed)
    {
        var buffers = weights.Select(w => new byte[TensorShapes.ElementCount(w.Shape) * sizeof(ushort)]).ToArray();
        var chunks = new List<(int Weight, long Chunk)>();
        for (var w = 0; w < weights.Count; w++)
        {
            var chunkCount = (buffers[w].Length / sizeof(ushort) + ChunkElements - 1) / ChunkElements;
            for (long chunk = 0; chunk < chunkCount; chunk++)
            {
                chunks.Add((w, chunk));
            }
        }
        Parallel.ForEach(chunks, item => FillChunk(weights[item.Weight], buffers[item.Weight], item.Chunk, seed));
        return weights
            .Select((weight, index) => new TensorToWrite(weight.Name, TensorDType.BF16, weight.Shape, buffers[index]))
            .ToArray();
    }

    private static void FillChunk(WeightSpec weight, byte[] destination, long chunk, ulong seed)
    {
        var elementCount = destination.Length / sizeof(ushort);
        var start = chunk * ChunkElements;
        var count = (int)Math.Min(ChunkElements, elementCount - start);
        var (mean, standardDeviation) = Distribution(weight);
        var values = ArrayPool<float>.Shared.Rent(count);
        try
        {
            var random = new SplitMix64(ChunkSeed(seed, weight.Name, chunk));
            GaussianSampler.Fill(values.AsSpan(0, count), ref random, mean, standardDeviation);
            FloatConversion.Float32ToBFloat16(values.AsSpan(0, count), destination.AsSpan((int)(start * sizeof(ushort)), count * sizeof(ushort)));
        }
        finally
        {
            ArrayPool<float>.Shared.Return(values);
        }
    }

    /// <summary>
    /// Linear weights get std gain/sqrt(fan_in), where the residual-branch outputs (o_proj, down_proj) have gain
    /// 1/sqrt(2 * layers) so the residual stream stays dominated by per-token content and deep layers still route
    /// every expert; the router gets 1/sqrt(hidden) (its fan-in); the embedding gets std 1 (hidden states are RMS-normalized before use, and the tied
    /// logits then have a healthy spread); norm weights are 1 + 0.1 N(0, 1).
    /// </summary>
    internal static (double Mean, double StandardDeviation) Distribution(WeightSpec weight) => weight.Role switch
    {
        WeightRole.Embedding => (0.0, 1.0),
        WeightRole.Norm => (1.0, 0.1),
        WeightRole.Linear or WeightRole.Router => (0.0, weight.Gain / Math.Sqrt(weight.Shape[^1])),
        WeightRole.Bias => (0.0, 0.02),
        _ => throw new ArgumentOutOfRangeException(nameof(weight), weight.Role, "unknown weight role"),
    };

    internal static ulong ChunkSeed(ulong seed, string tensorName, long chunk)
    {
        var nameHash = XxHash64.HashToUInt64(Encoding.UTF8.GetBytes(tensorName));
        return SplitMix64.Mix(SplitMix64.Mix(SplitMix64.Mix(seed) ^ nameHash) + (ulong)chunk);
    }
}
