using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Backends.Cpu;

/// <summary>
/// MXFP4, the OCP microscaling format gpt-oss ships its experts in: a matrix <c>[E, rows, cols]</c> is stored as
/// <c>NAME_blocks [E, rows, cols / 32, 16]</c> (two 4-bit E2M1 values a byte, the low nibble first) and
/// <c>NAME_scales [E, rows, cols / 32]</c> (a shared power of two per 32 values, biased by 127).
/// </summary>
internal static class Mxfp4
{
    /// <summary>The E2M1 values of the 16 codes: sign bit 3, then 0, 0.5, 1, 1.5, 2, 3, 4, 6.</summary>
    private static readonly float[] Codes = [0f, 0.5f, 1f, 1.5f, 2f, 3f, 4f, 6f, -0f, -0.5f, -1f, -1.5f, -2f, -3f, -4f, -6f];

    /// <summary>Dequantises <c>NAME_blocks</c> and <c>NAME_scales</c> into fp32 <c>[experts, rows, cols]</c>.</summary>
    public static float[] Dequantise(Checkpoint checkpoint, string name, long experts, long rows, long cols)
    {
        if (cols % 32 != 0)
        {
            throw new CheckpointException(checkpoint.Directory, name, $"'{name}' has {cols} columns, not a multiple of the 32-value MXFP4 block");
        }
        var groups = cols / 32;
        var blocks = checkpoint.ReadBytes($"{name}_blocks", experts, rows, groups, 16);
        var scales = checkpoint.ReadBytes($"{name}_scales", experts, rows, groups);
        return Decode(blocks, scales);
    }

    /// <summary>Each scale byte <c>s</c> multiplies its 32 values by <c>2^(s - 127)</c>.</summary>
    internal static float[] Decode(ReadOnlySpan<byte> blocks, ReadOnlySpan<byte> scales)
    {
        var values = new float[blocks.Length * 2];
        for (var group = 0; group < scales.Length; group++)
        {
            var factor = MathF.ScaleB(1f, scales[group] - 127);
            var packed = blocks.Slice(group * 16, 16);
            var output = values.AsSpan(group * 32, 32);
            for (var b = 0; b < 16; b++)
            {
                output[2 * b] = Codes[packed[b] & 0x0F] * factor;
                output[(2 * b) + 1] = Codes[packed[b] >> 4] * factor;
            }
        }
        return values;
    }
}
