using System.Numerics.Tensors;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Routing;

namespace RouteReplay.Backends.Cpu;

/// <summary>
/// The sparse MoE block: router softmax, top-k (or the forced experts), the selected SwiGLU experts, and the weighted
/// sum. Tokens are grouped by expert so a prefill reuses each expert's weights; every product is still computed by
/// the same per-row kernel, so grouping never changes a value.
/// </summary>
internal sealed class MoeBlock
{
    private readonly ModelConfig _config;
    private readonly RoutingFormat _format;
    private Buffers _buffers = new(0, 0, 0, 0, 0);

    public MoeBlock(ModelConfig config, RoutingFormat format)
    {
        _config = config;
        _format = format;
    }

    /// <summary>When set, sees every token's router probabilities (MoE layer index, token, probabilities); for checks.</summary>
    public Action<int, int, float[]>? RouterObserver { get; set; }

    /// <summary>Writes the block's output for <paramref name="tokens"/> rows of <paramref name="input"/> into <paramref name="output"/>.</summary>
    public void Forward(MoeWeights weights, ForwardBatch batch, int moeIndex, float[] input, float[] output, int tokens)
    {
        int k = _config.NumExpertsPerTok, experts = _config.NumExperts, h = _config.HiddenSize, inter = _config.MoeIntermediateSize;
        var b = EnsureBuffers(tokens);
        ParallelMath.MatMul(weights.Router, input, 0, tokens, b.RouterProbabilities, 0);
        for (var t = 0; t < tokens; t++)
        {
            Route(batch, moeIndex, t, b);
        }

        Array.Clear(b.ExpertCounts);
        for (var i = 0; i < tokens * k; i++)
        {
            b.ExpertCounts[b.Selected[i]]++;
        }
        var offset = 0;
        for (var e = 0; e < experts; e++)
        {
            b.ExpertOffsets[e] = offset;
            offset += b.ExpertCounts[e];
            b.ExpertCounts[e] = 0;
        }
        for (var i = 0; i < tokens * k; i++)
        {
            var e = b.Selected[i];
            var row = b.ExpertOffsets[e] + b.ExpertCounts[e]++;
            b.RowOfAssignment[i] = row;
            input.AsSpan(i / k * h, h).CopyTo(b.Gathered.AsSpan(row * h, h));
        }

        ParallelMath.For(Math.Min(experts, Environment.ProcessorCount * 4), part =>
        {
            var parts = Math.Min(experts, Environment.ProcessorCount * 4);
            for (var e = part; e < experts; e += parts)
            {
                var count = b.ExpertCounts[e];
                if (count > 0)
                {
                    RunExpert(weights.Experts[e], b, b.ExpertOffsets[e], count, inter, h);
                }
            }
        });

        for (var t = 0; t < tokens; t++)
        {
            var sum = output.AsSpan(t * h, h);
            sum.Clear();
            for (var j = 0; j < k; j++)
            {
                var i = (t * k) + j;
                Kernels.AddScaled(sum, b.ExpertOutput.AsSpan(b.RowOfAssignment[i] * h, h), b.GateWeights[i]);
            }
        }
    }

    /// <summary>Chooses the token's experts and gate weights and records them in its routing row.</summary>
    private void Route(ForwardBatch batch, int moeIndex, int t, Buffers b)
    {
        int k = _config.NumExpertsPerTok, experts = _config.NumExperts;
        var probabilities = b.RouterProbabilities.AsSpan(t * experts, experts);
        if (!TensorPrimitives.IsFiniteAll(probabilities))
        {
            batch.TokenStatus[t] |= (byte)TokenFault.NonFiniteRouterLogits;
            ReplaceNonFinite(probabilities);
        }
        Kernels.Softmax(probabilities);
        RouterObserver?.Invoke(moeIndex, t, probabilities.ToArray());
        var selected = b.Selected.AsSpan(t * k, k);
        var forcedRow = batch.ForcedRouting.AsSpan(t * _format.RowBytes, _format.RowBytes);
        if (batch.HasForcedRouting && !_format.IsUnsetRow(forcedRow))
        {
            for (var j = 0; j < k; j++)
            {
                var expert = _format.Get(forcedRow, (moeIndex * k) + j);
                if (expert >= experts)
                {
                    throw new ArgumentException($"forced routing of token {t} names expert {expert}, but the model has {experts} experts", nameof(batch));
                }
                selected[j] = expert;
            }
        }
        else
        {
            SelectTopK(probabilities, selected);
        }
        var gateWeights = b.GateWeights.AsSpan(t * k, k);
        var total = 0f;
        for (var j = 0; j < k; j++)
        {
            gateWeights[j] = probabilities[selected[j]];
            total += gateWeights[j];
        }
        if (_config.NormTopkProb && total > 0)
        {
            for (var j = 0; j < k; j++)
            {
                gateWeights[j] /= total;
            }
        }
        var routingRow = batch.RoutingRow(t);
        for (var j = 0; j < k; j++)
        {
            _format.Set(routingRow, (moeIndex * k) + j, selected[j]);
        }
    }

    /// <summary>
    /// Logits that are not finite count as -inf, so the finite ones still decide and every id stays in range; when none
    /// is finite they all become 0 (uniform probabilities; the engine fails the token's request anyway).
    /// </summary>
    private static void ReplaceNonFinite(Span<float> logits)
    {
        var any = false;
        foreach (ref var x in logits)
        {
            if (!float.IsFinite(x))
            {
                x = float.NegativeInfinity;
            }
            any |= x != float.NegativeInfinity;
        }
        if (!any)
        {
            logits.Fill(0f);
        }
    }

    /// <summary>The k largest probabilities in descending order; a tie goes to the lower expert id.</summary>
    internal static void SelectTopK(ReadOnlySpan<float> probabilities, Span<int> selected)
    {
        for (var j = 0; j < selected.Length; j++)
        {
            var best = -1;
            for (var e = 0; e < probabilities.Length; e++)
            {
                if (selected[..j].Contains(e))
                {
                    continue;
                }
                if (best < 0 || probabilities[e] > probabilities[best])
                {
                    best = e;
                }
            }
            selected[j] = best;
        }
    }

    private static void RunExpert(SwiGluMlp expert, Buffers b, int firstRow, int rows, int inter, int h)
    {
        Kernels.MatMul(expert.Gate.Weight, h, inter, b.Gathered.AsSpan(firstRow * h, rows * h), rows, b.Gate.AsSpan(firstRow * inter, rows * inter), 0, inter);
        Kernels.MatMul(expert.Up.Weight, h, inter, b.Gathered.AsSpan(firstRow * h, rows * h), rows, b.Up.AsSpan(firstRow * inter, rows * inter), 0, inter);
        var gate = b.Gate.AsSpan(firstRow * inter, rows * inter);
        var up = b.Up.AsSpan(firstRow * inter, rows * inter);
        for (var i = 0; i < gate.Length; i++)
        {
            gate[i] = Kernels.Silu(gate[i]) * up[i];
        }
        Kernels.MatMul(expert.Down.Weight, inter, h, gate, rows, b.ExpertOutput.AsSpan(firstRow * h, rows * h), 0, h);
    }

    private Buffers EnsureBuffers(int tokens)
    {
        if (_buffers.Capacity < tokens)
        {
            _buffers = new Buffers(Math.Max(tokens, _buffers.Capacity * 2), _config.NumExperts, _config.NumExpertsPerTok, _config.HiddenSize, _config.MoeIntermediateSize);
        }
        return _buffers;
    }

    private sealed class Buffers(int capacity, int experts, int k, int hidden, int inter)
    {
        public int Capacity { get; } = capacity;

        public float[] RouterProbabilities { get; } = new float[capacity * experts];

        /// <summary><c>[tokens, k]</c>: the chosen expert of each assignment.</summary>
        public int[] Selected { get; } = new int[capacity * k];

        public float[] GateWeights { get; } = new float[capacity * k];

        public int[] ExpertCounts { get; } = new int[experts];

        public int[] ExpertOffsets { get; } = new int[experts];

        /// <summary>Row of each assignment in the expert-grouped buffers.</summary>
        public int[] RowOfAssignment { get; } = new int[capacity * k];

        public float[] Gathered { get; } = new float[capacity * k * hidden];

        public float[] Gate { get; } = new float[capacity * k * inter];

        public float[] Up { get; } = new float[capacity * k * inter];

        public float[] ExpertOutput { get; } = new float[capacity * k * hidden];
    }
}
