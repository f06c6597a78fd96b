using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Backends.Cpu;

/// <summary>
/// Rotary position embedding in the half-rotation layout (dimension <c>i</c> pairs with <c>i + d/2</c>), with the
/// default, linear and YaRN frequency schedules. Angles are computed in fp32 as the reference implementation does.
/// </summary>
internal sealed class RotaryEmbedding
{
    private readonly float[] _inverseFrequencies;
    private readonly float _attentionScaling;

    public RotaryEmbedding(ModelConfig config)
    {
        HeadDim = config.HeadDim;
        (_inverseFrequencies, _attentionScaling) = Schedule(config);
    }

    public int HeadDim { get; }

    /// <summary>Writes <c>cos</c> and <c>sin</c> (each <c>HeadDim / 2</c> values) for <paramref name="position"/>.</summary>
    public void Angles(int position, Span<float> cos, Span<float> sin)
    {
        var p = (float)position;
        for (var i = 0; i < _inverseFrequencies.Length; i++)
        {
            var angle = p * _inverseFrequencies[i];
            cos[i] = MathF.Cos(angle) * _attentionScaling;
            sin[i] = MathF.Sin(angle) * _attentionScaling;
        }
    }

    /// <summary>Rotates one head vector in place.</summary>
    public static void Apply(Span<float> head, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        var half = head.Length / 2;
        for (var i = 0; i < half; i++)
        {
            var x1 = head[i];
            var x2 = head[i + half];
            head[i] = (x1 * cos[i]) - (x2 * sin[i]);
            head[i + half] = (x2 * cos[i]) + (x1 * sin[i]);
        }
    }

    /// <summary>The inverse frequencies (fp32) and the cos/sin scale of the config's RoPE; the CUDA backend uses the same.</summary>
    internal static (float[] InverseFrequencies, float AttentionScaling) Schedule(ModelConfig config)
    {
        var dim = config.HeadDim;
        var theta = config.RopeTheta;
        var baseFrequencies = new float[dim / 2];
        for (var i = 0; i < baseFrequencies.Length; i++)
        {
            // As transformers computes them: the power rounded to fp32, then an fp32 reciprocal (two roundings).
            baseFrequencies[i] = 1f / (float)Math.Pow(theta, (float)(2 * i) / dim);
        }
        var scaling = config.RopeScaling;
        switch (scaling?.Type)
        {
            case null or "default":
                return (baseFrequencies, 1f);
            case "linear":
                return (baseFrequencies.Select(f => (float)(f / scaling.Factor)).ToArray(), 1f);
            case "yarn":
                return Yarn(config, scaling, baseFrequencies);
            default:
                throw new NotSupportedException($"rope scaling type '{scaling.Type}' is not supported (default, linear, yarn)");
        }
    }

    private static (float[], float) Yarn(ModelConfig config, RopeScaling scaling, float[] extrapolation)
    {
        var dim = config.HeadDim;
        var factor = scaling.Factor;
        var originalMax = scaling.OriginalMaxPositionEmbeddings ?? config.MaxPositionEmbeddings;
        var attentionFactor = scaling.AttentionFactor
            ?? (scaling.Mscale is { } mscale && scaling.MscaleAllDim is { } all && mscale != 0 && all != 0
                ? RopeScaling.YarnMscale(factor, mscale) / RopeScaling.YarnMscale(factor, all)
                : RopeScaling.YarnMscale(factor));
        var betaFast = scaling.BetaFast ?? 32.0;
        var betaSlow = scaling.BetaSlow ?? 1.0;
        double CorrectionDim(double rotations) =>
            dim * Math.Log(originalMax / (rotations * 2 * Math.PI)) / (2 * Math.Log(config.RopeTheta));
        var low = CorrectionDim(betaFast);
        var high = CorrectionDim(betaSlow);
        if (scaling.Truncate)
        {
            low = Math.Floor(low);
            high = Math.Ceiling(high);
        }
        low = Math.Max(low, 0);
        high = Math.Min(high, dim - 1);
        if (low == high)
        {
            high += 0.001;
        }
        var result = new float[dim / 2];
        for (var i = 0; i < result.Length; i++)
        {
            var ramp = Math.Clamp((i - low) / (high - low), 0, 1);
            var extrapolationFactor = (float)(1 - ramp);
            var interpolated = extrapolation[i] / (float)factor;
            result[i] = (interpolated * (1 - extrapolationFactor)) + (extrapolation[i] * extrapolationFactor);
        }
        return (result, (float)attentionFactor);
    }
}
