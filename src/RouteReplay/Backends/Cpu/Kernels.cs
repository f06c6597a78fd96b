using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace RouteReplay.Backends.Cpu;

/// <summary>
/// fp32 kernels with a fixed reduction order. Every dot product, whichever entry point computes it, runs the same
/// sequence of fused multiply-adds over 8-lane chunks, one horizontal sum, then a scalar tail. Results therefore do not
/// depend on batch size, tiling, threading or memory alignment, which keeps the forward batch-invariant.
/// </summary>
internal static class Kernels
{
    private const int Lanes = 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        ref var pa = ref MemoryMarshal.GetReference(a);
        ref var pb = ref MemoryMarshal.GetReference(b);
        var n = a.Length;
        var acc = Vector256<float>.Zero;
        var i = 0;
        for (; i <= n - Lanes; i += Lanes)
        {
            acc = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref pa, (nuint)i), Vector256.LoadUnsafe(ref pb, (nuint)i), acc);
        }
        var sum = Vector256.Sum(acc);
        for (; i < n; i++)
        {
            sum = MathF.FusedMultiplyAdd(Unsafe.Add(ref pa, i), Unsafe.Add(ref pb, i), sum);
        }
        return sum;
    }

    /// <summary>Four dot products of <paramref name="x"/> with four rows, each computed exactly as <see cref="Dot"/> does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot4(ReadOnlySpan<float> x, ReadOnlySpan<float> w, int inDim, Span<float> result)
    {
        ref var px = ref MemoryMarshal.GetReference(x);
        ref var w0 = ref MemoryMarshal.GetReference(w);
        ref var w1 = ref Unsafe.Add(ref w0, inDim);
        ref var w2 = ref Unsafe.Add(ref w1, inDim);
        ref var w3 = ref Unsafe.Add(ref w2, inDim);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        var i = 0;
        for (; i <= inDim - Lanes; i += Lanes)
        {
            var xv = Vector256.LoadUnsafe(ref px, (nuint)i);
            a0 = Vector256.FusedMultiplyAdd(xv, Vector256.LoadUnsafe(ref w0, (nuint)i), a0);
            a1 = Vector256.FusedMultiplyAdd(xv, Vector256.LoadUnsafe(ref w1, (nuint)i), a1);
            a2 = Vector256.FusedMultiplyAdd(xv, Vector256.LoadUnsafe(ref w2, (nuint)i), a2);
            a3 = Vector256.FusedMultiplyAdd(xv, Vector256.LoadUnsafe(ref w3, (nuint)i), a3);
        }
        float s0 = Vector256.Sum(a0), s1 = Vector256.Sum(a1), s2 = Vector256.Sum(a2), s3 = Vector256.Sum(a3);
        for (; i < inDim; i++)
        {
            var xi = Unsafe.Add(ref px, i);
            s0 = MathF.FusedMultiplyAdd(xi, Unsafe.Add(ref w0, i), s0);
            s1 = MathF.FusedMultiplyAdd(xi, Unsafe.Add(ref w1, i), s1);
            s2 = MathF.FusedMultiplyAdd(xi, Unsafe.Add(ref w2, i), s2);
            s3 = MathF.FusedMultiplyAdd(xi, Unsafe.Add(ref w3, i), s3);
        }
        result[0] = s0;
        result[1] = s1;
        result[2] = s2;
        result[3] = s3;
    }

    /// <summary>
    /// <c>y[t, o] = W[o, :] · x[t, :]</c> for output rows <c>[rowStart, rowEnd)</c> and all <paramref name="tokens"/>,
    /// where <c>W</c> is <c>[outDim, inDim]</c> row-major (the PyTorch Linear layout), <c>x</c> is <c>[tokens, inDim]</c>
    /// and <c>y</c> is <c>[tokens, outDim]</c>. Rows are visited in cache-sized panels so prefill reuses each panel.
    /// </summary>
    public static void MatMul(ReadOnlySpan<float> w, int inDim, int outDim, ReadOnlySpan<float> x, int tokens, Span<float> y, int rowStart, int rowEnd)
    {
        const int panel = 32;
        Span<float> four = stackalloc float[4];
        for (var p = rowStart; p < rowEnd; p += panel)
        {
            var pEnd = Math.Min(p + panel, rowEnd);
            for (var t = 0; t < tokens; t++)
            {
                var xt = x.Slice(t * inDim, inDim);
                var yt = y.Slice(t * outDim, outDim);
                var o = p;
                for (; o + 4 <= pEnd; o += 4)
                {
                    Dot4(xt, w.Slice(o * inDim, 4 * inDim), inDim, four);
                    four.CopyTo(yt.Slice(o, 4));
                }
                for (; o < pEnd; o++)
                {
                    yt[o] = Dot(xt, w.Slice(o * inDim, inDim));
                }
            }
        }
    }

    /// <summary>
    /// <see cref="MatMul"/> over a bf16 weight (raw 16-bit patterns). Widening bf16 to fp32 is exact and each dot
    /// product runs the same fused multiply-adds in the same order, so the results equal the fp32 kernel's bit for bit
    /// while reading half the bytes.
    /// </summary>
    public static void MatMulBf16(ReadOnlySpan<ushort> w, int inDim, int outDim, ReadOnlySpan<float> x, int tokens, Span<float> y, int rowStart, int rowEnd)
    {
        const int panel = 32;
        Span<float> four = stackalloc float[4];
        for (var p = rowStart; p < rowEnd; p += panel)
        {
            var pEnd = Math.Min(p + panel, rowEnd);
            for (var t = 0; t < tokens; t++)
            {
                var xt = x.Slice(t * inDim, inDim);
                var yt = y.Slice(t * outDim, outDim);
                var o = p;
                for (; o + 4 <= pEnd; o += 4)
                {
                    Dot4Bf16(xt, w.Slice(o * inDim, 4 * inDim), inDim, four);
                    four.CopyTo(yt.Slice(o, 4));
                }
                for (; o < pEnd; o++)
                {
                    Dot4Bf16(xt, w.Slice(o * inDim, inDim), inDim, four, rows: 1);
                    yt[o] = four[0];
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> LoadBf16(ref ushort source, int offset)
    {
        var raw = Vector128.LoadUnsafe(ref source, (nuint)offset);
        var wide = Vector256.Create(Vector128.WidenLower(raw), Vector128.WidenUpper(raw));
        return Vector256.ShiftLeft(wide, 16).AsSingle();
    }

    private static float Bf16ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Up to four dot products against bf16 rows, each in exactly <see cref="Dot"/>'s order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot4Bf16(ReadOnlySpan<float> x, ReadOnlySpan<ushort> w, int inDim, Span<float> result, int rows = 4)
    {
        ref var px = ref MemoryMarshal.GetReference(x);
        ref var w0 = ref MemoryMarshal.GetReference(w);
        ref var w1 = ref Unsafe.Add(ref w0, rows > 1 ? inDim : 0);
        ref var w2 = ref Unsafe.Add(ref w0, rows > 2 ? 2 * inDim : 0);
        ref var w3 = ref Unsafe.Add(ref w0, rows > 3 ? 3 * inDim : 0);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        var i = 0;
        for (; i <= inDim - Lanes; i += Lanes)
        {
            var xv = Vector256.LoadUnsafe(ref px, (nuint)i);
            a0 = Vector256.FusedMultiplyAdd(xv, LoadBf16(ref w0, i), a0);
            a1 = Vector256.FusedMultiplyAdd(xv, LoadBf16(ref w1, i), a1);
            a2 = Vector256.FusedMultiplyAdd(xv, LoadBf16(ref w2, i), a2);
            a3 = Vector256.FusedMultiplyAdd(xv, LoadBf16(ref w3, i), a3);
        }
        float s0 = Vector256.Sum(a0), s1 = Vector256.Sum(a1), s2 = Vector256.Sum(a2), s3 = Vector256.Sum(a3);
        for (; i < inDim; i++)
        {
            var xi = Unsafe.Add(ref px, i);
            s0 = MathF.FusedMultiplyAdd(xi, Bf16ToSingle(Unsafe.Add(ref w0, i)), s0);
            s1 = MathF.FusedMultiplyAdd(xi, Bf16ToSingle(Unsafe.Add(ref w1, i)), s1);
            s2 = MathF.FusedMultiplyAdd(xi, Bf16ToSingle(Unsafe.Add(ref w2, i)), s2);
            s3 = MathF.FusedMultiplyAdd(xi, Bf16ToSingle(Unsafe.Add(ref w3, i)), s3);
        }
        result[0] = s0;
        result[1] = s1;
        result[2] = s2;
        result[3] = s3;
    }

    /// <summary>Widens one bf16 row to fp32.</summary>
    public static void Bf16ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        for (var i = 0; i < source.Length; i++)
        {
            destination[i] = Bf16ToSingle(source[i]);
        }
    }

    /// <summary>The bf16 patterns of <paramref name="values"/> when every value is exactly a bf16, else null.</summary>
    public static ushort[]? ToBf16IfLossless(ReadOnlySpan<float> values)
    {
        var result = GC.AllocateUninitializedArray<ushort>(values.Length);
        for (var i = 0; i < values.Length; i++)
        {
            var bits = BitConverter.SingleToInt32Bits(values[i]);
            if ((bits & 0xFFFF) != 0)
            {
                return null;
            }
            result[i] = (ushort)((uint)bits >> 16);
        }
        return result;
    }

    /// <summary>RMSNorm: <c>y = x / sqrt(mean(x²) + eps) * weight</c>.</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        var meanSquare = Dot(x, x) / x.Length;
        var scale = 1f / MathF.Sqrt(meanSquare + eps);
        for (var i = 0; i < x.Length; i++)
        {
            y[i] = x[i] * scale * weight[i];
        }
    }

    public static float Silu(float x) => x / (1f + MathF.Exp(-x));

    /// <summary>In-place softmax with a scalar exponent, so every element is computed by the same code path.</summary>
    public static void Softmax(Span<float> values)
    {
        var max = float.NegativeInfinity;
        foreach (var v in values)
        {
            max = MathF.Max(max, v);
        }
        var sum = 0f;
        for (var i = 0; i < values.Length; i++)
        {
            var e = MathF.Exp(values[i] - max);
            values[i] = e;
            sum += e;
        }
        var inverse = 1f / sum;
        for (var i = 0; i < values.Length; i++)
        {
            values[i] *= inverse;
        }
    }

    /// <summary><c>acc += scale * v</c>, element by element with a fused multiply-add.</summary>
    public static void AddScaled(Span<float> acc, ReadOnlySpan<float> v, float scale)
    {
        ref var pa = ref MemoryMarshal.GetReference(acc);
        ref var pv = ref MemoryMarshal.GetReference(v);
        var s = Vector256.Create(scale);
        var i = 0;
        for (; i <= acc.Length - Lanes; i += Lanes)
        {
            Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref pv, (nuint)i), s, Vector256.LoadUnsafe(ref pa, (nuint)i))
                .StoreUnsafe(ref pa, (nuint)i);
        }
        for (; i < acc.Length; i++)
        {
            Unsafe.Add(ref pa, i) = MathF.FusedMultiplyAdd(Unsafe.Add(ref pv, i), scale, Unsafe.Add(ref pa, i));
        }
    }
}
