namespace RouteReplay.Tests.Model;

/// <summary>
/// An independent reference for fp32 to bf16 rounding: picks the nearer of the two neighbouring bf16 values by
/// exact double arithmetic, the one with an even last mantissa bit on a tie.
/// </summary>
internal static class BFloat16Reference
{
    public static ushort Round(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        var truncated = (ushort)(bits >> 16);
        if ((bits & 0xFFFF) == 0 || !float.IsFinite(value))
        {
            return truncated;
        }
        var awayFromZero = (ushort)(truncated + 1);
        var toward = Math.Abs((double)value - Widen(truncated));
        var away = Math.Abs((double)value - Widen(awayFromZero));
        if (toward < away)
        {
            return truncated;
        }
        if (away < toward)
        {
            return awayFromZero;
        }
        return (truncated & 1) == 0 ? truncated : awayFromZero;
    }

    private static double Widen(ushort bf16)
    {
        if ((bf16 & 0x7FFF) == 0x7F80)
        {
            // Past the largest finite bf16, the next value up is where the next binade would start: 2^128.
            return Math.CopySign(Math.Pow(2, 128), (bf16 & 0x8000) != 0 ? -1 : 1);
        }
        return BitConverter.UInt32BitsToSingle((uint)bf16 << 16);
    }
}
