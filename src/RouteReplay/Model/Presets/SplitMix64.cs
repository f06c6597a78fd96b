namespace RouteReplay.Model.Presets;

/// <summary>The SplitMix64 generator: a tiny, fast, fully reproducible 64-bit PRNG (Steele, Lea and Flood, 2014).</summary>
internal struct SplitMix64
{
    private const ulong GoldenGamma = 0x9E3779B97F4A7C15UL;

    private ulong _state;

    public SplitMix64(ulong seed) => _state = seed;

    /// <summary>The SplitMix64 output function: a bijective 64-bit mixer, also handy to derive independent seeds.</summary>
    public static ulong Mix(ulong value)
    {
        value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9UL;
        value = (value ^ (value >> 27)) * 0x94D049BB133111EBUL;
        return value ^ (value >> 31);
    }

    public ulong NextUInt64()
    {
        _state += GoldenGamma;
        return Mix(_state);
    }

    /// <summary>A uniform double in (0, 1]: never 0, so its logarithm is finite.</summary>
    public double NextDoubleNonZero() => ((NextUInt64() >> 11) + 1) * (1.0 / (1UL << 53));

    /// <summary>A uniform double in [0, 1).</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));
}
