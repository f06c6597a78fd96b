namespace RouteReplay.Model.Presets;

/// <summary>Fills buffers with normal samples by the Box-Muller transform, computed in double precision.</summary>
internal static class GaussianSampler
{
    public static void Fill(Span<float> destination, ref SplitMix64 random, double mean, double standardDeviation)
    {
        for (var i = 0; i < destination.Length; i += 2)
        {
            var radius = Math.Sqrt(-2.0 * Math.Log(random.NextDoubleNonZero())) * standardDeviation;
            var (sin, cos) = Math.SinCos(2.0 * Math.PI * random.NextDouble());
            destination[i] = (float)(mean + (radius * cos));
            if (i + 1 < destination.Length)
            {
                destination[i + 1] = (float)(mean + (radius * sin));
            }
        }
    }
}
