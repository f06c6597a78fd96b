using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Cli.Bench;

/// <summary>
/// The fewest bytes a decode step must read from device memory, and the time that takes at the measured copy
/// bandwidth: every attention and router weight, the lm_head, the weights of each distinct expert the step's tokens
/// route to (per MoE layer), the dense MLP of dense layers, and every sequence's K and V so far. Norm weights and the
/// embedding rows are under 0.1% and left out.
/// </summary>
internal sealed record DecodeRoofline(long WeightBytes, long ExpertBytes, long KvBytes)
{
    public long TotalBytes => WeightBytes + ExpertBytes + KvBytes;

    /// <param name="distinctExperts">Distinct experts the step's tokens use, summed over the MoE layers.</param>
    /// <param name="contextTokens">Tokens of KV the step's sequences read, summed over sequences.</param>
    public static DecodeRoofline For(ModelConfig c, double distinctExperts, long contextTokens)
    {
        long h = c.HiddenSize, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim;
        var attention = ((q * h) + (2 * kv * h) + (h * q)) * 2;
        var router = (long)c.NumExperts * h * 2;
        var dense = 3L * c.IntermediateSize * h * 2;
        long weights = (long)c.VocabSize * h * 2;
        for (var layer = 0; layer < c.NumHiddenLayers; layer++)
        {
            weights += attention + (c.IsMoeLayer(layer) ? router : dense);
        }
        var perExpert = 3L * c.MoeIntermediateSize * h * 2;
        var kvBytes = contextTokens * c.NumHiddenLayers * 2 * kv * 2;
        return new DecodeRoofline(weights, (long)(distinctExperts * perExpert), kvBytes);
    }

    /// <summary>Seconds to read <see cref="TotalBytes"/> once at a copy bandwidth that counts bytes read plus written.</summary>
    public double Seconds(double copyGigabytesPerSecond) => TotalBytes / (copyGigabytesPerSecond * 1e9);
}
