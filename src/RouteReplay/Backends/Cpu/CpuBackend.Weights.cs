using RouteReplay.Cache;
using RouteReplay.Model;

namespace RouteReplay.Backends.Cpu;

/// <summary>Weight reload: a checkpoint of the same architecture and shapes is read, then copied over the live arrays.</summary>
public sealed partial class CpuBackend : IReloadableBackend
{
    public PreparedWeights PrepareWeights(Checkpoint checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        if (!checkpoint.Config.Equals(Config))
        {
            throw new ArgumentException(
                $"the checkpoint in '{checkpoint.Directory}' does not match the served model's architecture: {FirstDifference(Config, checkpoint.Config)}",
                "model_path");
        }
        return new CpuWeights(Qwen3MoeWeights.Load(checkpoint));
    }

    public void ApplyWeights(PreparedWeights weights)
    {
        if (weights is not CpuWeights cpu)
        {
            throw new ArgumentException("the weights were not prepared by a CPU backend", nameof(weights));
        }
        var source = cpu.Weights;
        Copy(source.Embedding, _weights.Embedding);
        Copy(source.FinalNorm, _weights.FinalNorm);
        if (!ReferenceEquals(_weights.LmHead.Weight, _weights.Embedding))
        {
            Copy(source.LmHead, _weights.LmHead);
        }
        for (var layer = 0; layer < _weights.Layers.Length; layer++)
        {
            var from = source.Layers[layer];
            var to = _weights.Layers[layer];
            Copy(from.InputNorm, to.InputNorm);
            Copy(from.PostAttentionNorm, to.PostAttentionNorm);
            Copy(from.Attention.Q, to.Attention.Q);
            Copy(from.Attention.K, to.Attention.K);
            Copy(from.Attention.V, to.Attention.V);
            Copy(from.Attention.O, to.Attention.O);
            Copy(from.Attention.QNorm, to.Attention.QNorm);
            Copy(from.Attention.KNorm, to.Attention.KNorm);
            if (to.Dense is { } dense)
            {
                Copy(from.Dense!, dense);
            }
            if (to.Moe is { } moe)
            {
                Copy(from.Moe!.Router, moe.Router);
                for (var e = 0; e < moe.Experts.Length; e++)
                {
                    Copy(from.Moe.Experts[e], moe.Experts[e]);
                }
            }
        }
    }

    private static void Copy(SwiGluMlp from, SwiGluMlp to)
    {
        Copy(from.Gate, to.Gate);
        Copy(from.Up, to.Up);
        Copy(from.Down, to.Down);
    }

    private static void Copy(Linear from, Linear to)
    {
        Copy(from.Weight, to.Weight);
        if (to.Bias is { } bias)
        {
            Copy(from.Bias!, bias);
        }
    }

    private static void Copy(float[] from, float[] to)
    {
        if (from.Length != to.Length)
        {
            throw new ArgumentException($"a weight of {from.Length} values cannot replace one of {to.Length}", nameof(from));
        }
        from.CopyTo(to, 0);
    }

    /// <summary>The first line where the two configs' canonical fingerprint texts differ, as "name: served vs new".</summary>
    private static string FirstDifference(ModelConfig served, ModelConfig candidate)
    {
        var a = ModelFingerprint.CanonicalText(served, "").Split('\n');
        var b = ModelFingerprint.CanonicalText(candidate, "").Split('\n');
        for (var i = 0; i < Math.Min(a.Length, b.Length); i++)
        {
            if (a[i] != b[i])
            {
                var name = a[i].Split('=')[0];
                return $"{name} is {a[i][(name.Length + 1)..]} here but {b[i][(name.Length + 1)..]} in the new checkpoint";
            }
        }
        return "their end-of-sequence token ids differ";
    }

    private sealed class CpuWeights(Qwen3MoeWeights weights) : PreparedWeights
    {
        public Qwen3MoeWeights Weights { get; } = weights;
    }
}
