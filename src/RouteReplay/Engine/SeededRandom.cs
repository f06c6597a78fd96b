using System.Security.Cryptography;

namespace RouteReplay.Engine;

/// <summary>
/// A small, fast, reproducible generator (SplitMix64). Its sequence is fixed by this code, not by the runtime's
/// <see cref="Random"/> implementation, so a seed gives the same samples across .NET versions and machines.
/// </summary>
public struct SeededRandom
{
    private ulong _state;

    public SeededRandom(ulong seed) => _state = seed;

    /// <summary>
    /// The generator's whole state: <c>new SeededRandom(State)</c> continues the same sequence, so a request sampled
    /// on one engine (its first token on a prefill server) continues exactly on another.
    /// </summary>
    public readonly ulong State => _state;

    public static SeededRandom FromSeedOrEntropy(ulong? seed) =>
        new(seed ?? BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)));

    public ulong NextUInt64()
    {
        var z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A uniform value in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));
}
