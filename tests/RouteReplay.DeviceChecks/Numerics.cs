using RouteReplay.Routing;

namespace RouteReplay.DeviceChecks;

/// <summary>Small helpers the comparisons share.</summary>
public static class Numerics
{
    /// <summary>The <paramref name="k"/> largest values' indices, descending, ties to the lower index.</summary>
    public static int[] TopIndices(ReadOnlySpan<float> values, int k)
    {
        var result = new int[k];
        for (var j = 0; j < k; j++)
        {
            var best = -1;
            for (var i = 0; i < values.Length; i++)
            {
                if (Array.IndexOf(result, i, 0, j) >= 0)
                {
                    continue;
                }
                if (best < 0 || values[i] > values[best])
                {
                    best = i;
                }
            }
            result[j] = best;
        }
        return result;
    }

    /// <summary>The experts of MoE layer <paramref name="layer"/> in a routing row, as a set.</summary>
    public static HashSet<int> Experts(RoutingFormat format, ReadOnlySpan<byte> row, int layer)
    {
        var set = new HashSet<int>();
        for (var j = 0; j < format.TopK; j++)
        {
            set.Add(format.Get(row, (layer * format.TopK) + j));
        }
        return set;
    }

    /// <summary>The spacing of bf16 values around <paramref name="x"/> (one unit in the last place).</summary>
    public static double Bf16Step(double x)
    {
        var magnitude = Math.Abs(x);
        return magnitude < 1e-30 ? 1e-30 : Math.Pow(2, Math.Floor(Math.Log2(magnitude)) - 7);
    }
}
