using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Backends.Cpu;

/// <summary>
/// gpt-oss's experts, read into one <see cref="SwiGluMlp"/> with biases per expert. Unquantised checkpoints store
/// <c>gate_up_proj [E, H, 2I]</c> input-major with gate and up columns interleaved (column <c>2j</c> is gate row
/// <c>j</c>, <c>2j + 1</c> up row <c>j</c>) and <c>down_proj [E, I, H]</c>; MXFP4 checkpoints store the same matrices
/// output-major as <c>*_blocks</c> and <c>*_scales</c> (<see cref="Mxfp4"/>).
/// </summary>
internal static class GptOssExperts
{
    public static SwiGluMlp[] Read(Checkpoint checkpoint, string prefix, ModelConfig c)
    {
        int e = c.NumExperts, h = c.HiddenSize, i = c.MoeIntermediateSize;
        var gateUpBias = checkpoint.ReadFloat32($"{prefix}.gate_up_proj_bias", e, 2L * i);
        var downBias = checkpoint.ReadFloat32($"{prefix}.down_proj_bias", e, h);
        var quantised = checkpoint.HasTensor($"{prefix}.gate_up_proj_blocks");
        // Output-major [E, 2I, H] and [E, H, I] either way from here on.
        var gateUp = quantised
            ? Mxfp4.Dequantise(checkpoint, $"{prefix}.gate_up_proj", e, 2L * i, h)
            : Transpose(checkpoint.ReadFloat32($"{prefix}.gate_up_proj", e, h, 2L * i), e, h, 2 * i);
        var down = quantised
            ? Mxfp4.Dequantise(checkpoint, $"{prefix}.down_proj", e, h, i)
            : Transpose(checkpoint.ReadFloat32($"{prefix}.down_proj", e, i, h), e, i, h);
        var experts = new SwiGluMlp[e];
        for (var x = 0; x < e; x++)
        {
            var gate = new float[i * h];
            var up = new float[i * h];
            var gateBias = new float[i];
            var upBias = new float[i];
            for (var j = 0; j < i; j++)
            {
                gateUp.AsSpan(((x * 2 * i) + (2 * j)) * h, h).CopyTo(gate.AsSpan(j * h, h));
                gateUp.AsSpan(((x * 2 * i) + (2 * j) + 1) * h, h).CopyTo(up.AsSpan(j * h, h));
                gateBias[j] = gateUpBias[(x * 2 * i) + (2 * j)];
                upBias[j] = gateUpBias[(x * 2 * i) + (2 * j) + 1];
            }
            experts[x] = new SwiGluMlp(
                new Linear(gate, i, h, gateBias),
                new Linear(up, i, h, upBias),
                new Linear(down.AsSpan(x * h * i, h * i).ToArray(), h, i, downBias.AsSpan(x * h, h).ToArray()));
        }
        return experts;
    }

    /// <summary><c>[E, rows, cols]</c> to <c>[E, cols, rows]</c>.</summary>
    private static float[] Transpose(float[] source, int experts, int rows, int cols)
    {
        var result = new float[source.Length];
        for (var x = 0; x < experts; x++)
        {
            var offset = x * rows * cols;
            for (var r = 0; r < rows; r++)
            {
                for (var col = 0; col < cols; col++)
                {
                    result[offset + (col * rows) + r] = source[offset + (r * cols) + col];
                }
            }
        }
        return result;
    }
}
