namespace RouteReplay.Backends.Cpu;

/// <summary>Splits work across cores. Splitting never changes results: every output element has one fixed code path.</summary>
internal static class ParallelMath
{
    private const long MinMultiplyAddsPerChunk = 1 << 17;

    /// <summary><c>y[t] = W x[t] (+ bias)</c> for <paramref name="tokens"/> rows starting at the given offsets.</summary>
    public static void MatMul(Linear w, float[] x, int xOffset, int tokens, float[] y, int yOffset)
    {
        var work = (long)tokens * w.OutDim * w.InDim;
        var chunks = (int)Math.Clamp(work / MinMultiplyAddsPerChunk, 1, Environment.ProcessorCount * 4);
        chunks = Math.Min(chunks, Math.Max(1, w.OutDim / 32));
        if (chunks == 1)
        {
            MatMulRows(w, x, xOffset, tokens, y, yOffset, 0, w.OutDim);
        }
        else
        {
            var rowsPerChunk = ((w.OutDim + chunks - 1) / chunks + 31) / 32 * 32;
            Parallel.For(0, chunks, c =>
            {
                var start = c * rowsPerChunk;
                var end = Math.Min(start + rowsPerChunk, w.OutDim);
                if (start < end)
                {
                    MatMulRows(w, x, xOffset, tokens, y, yOffset, start, end);
                }
            });
        }
        if (w.Bias is { } bias)
        {
            for (var t = 0; t < tokens; t++)
            {
                var row = y.AsSpan(yOffset + (t * w.OutDim), w.OutDim);
                for (var i = 0; i < row.Length; i++)
                {
                    row[i] += bias[i];
                }
            }
        }
    }

    private static void MatMulRows(Linear w, float[] x, int xOffset, int tokens, float[] y, int yOffset, int rowStart, int rowEnd)
    {
        var input = x.AsSpan(xOffset, tokens * w.InDim);
        var output = y.AsSpan(yOffset, tokens * w.OutDim);
        if (w.Bf16Weight is { } bf16)
        {
            Kernels.MatMulBf16(bf16, w.InDim, w.OutDim, input, tokens, output, rowStart, rowEnd);
        }
        else
        {
            Kernels.MatMul(w.Weight, w.InDim, w.OutDim, input, tokens, output, rowStart, rowEnd);
        }
    }

    /// <summary>Runs <paramref name="body"/> for every index, inline when there is a single one.</summary>
    public static void For(int count, Action<int> body)
    {
        if (count == 1)
        {
            body(0);
        }
        else if (count > 1)
        {
            Parallel.For(0, count, body);
        }
    }
}
