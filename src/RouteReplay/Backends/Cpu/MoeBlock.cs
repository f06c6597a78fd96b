using System.Numerics.Tensors;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Routing;

namespace RouteReplay.Backends.Cpu;

/// <summary>
/// The sparse MoE block: the router's scores and top-k (<see cref="ExpertRouter"/>, or the forced experts), the
/// selected SwiGLU experts, the weighted sum, and the shared expert when the family has one. Tokens are grouped by
/// expert so a prefill reuses each expert's weights; every product is still computed by the same per-row kernel, so
/// grouping never changes a value.
/// </summary>
internal sealed class MoeBlock
{
    private readonly ModelConfig _config;
    private readonly RoutingFormat _format;
    private readonly ExpertRouter _router;
    private Buffers _buffers = new(0, 0, 0, 0, 0, 0);

    public MoeBlock(ModelConfig config, RoutingFormat format)
    {
        _config = config;
        _format = format;
        _router = new ExpertRouter(config);
    }

    /// <summary>
    /// When set, sees every token's selection scores (MoE layer index, token, scores): the router probabilities of a
    /// softmax router; for checks.
    /// </summary>
    public Action<int, int, float[]>? RouterObserver { get; set; }

    /// <summary>Writes the block's output for <paramref name="tokens"/> rows of <paramref name="input"/> into <paramref name="output"/>.</summary>
    public void Forward(MoeWeights weights, ForwardBatch batch, int moeIndex, float[] input, float[] output, int tokens)
    {
        int k = _config.NumExpertsPerTok, experts = _config.NumExperts, h = _config.HiddenSize, inter = _config.MoeIntermediateSize;
        var b = EnsureBuffers(tokens);
        ParallelMath.MatMul(weights.Router, input, 0, tokens, b.RouterProbabilities, 0);
        for (var t = 0; t < tokens; t++)
        {
            Route(batch, weights, moeIndex, t, b);
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
                    RunExpert(weights.Experts[e], b, b.ExpertOffsets[e], count);
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
        if (weights.SharedExpert is { } shared)
        {
            AddSharedExpert(weights, shared, input, output, tokens, b);
        }
    }

    /// <summary>Adds the shared expert's output, scaled by <c>sigmoid(shared_expert_gate(x))</c> when the block has that gate.</summary>
    private void AddSharedExpert(MoeWeights weights, SwiGluMlp shared, float[] input, float[] output, int tokens, Buffers b)
    {
        var h = _config.HiddenSize;
        ParallelMath.MatMul(shared.Gate, input, 0, tokens, b.SharedGate, 0);
        ParallelMath.MatMul(shared.Up, input, 0, tokens, b.SharedUp, 0);
        var count = tokens * shared.Gate.OutDim;
        for (var i = 0; i < count; i++)
        {
            b.SharedGate[i] = Kernels.Silu(b.SharedGate[i]) * b.SharedUp[i];
        }
        ParallelMath.MatMul(shared.Down, b.SharedGate, 0, tokens, b.SharedOutput, 0);
        if (weights.SharedExpertGate is { } gate)
        {
            ParallelMath.MatMul(gate, input, 0, tokens, b.SharedGateLogits, 0);
        }
        for (var t = 0; t < tokens; t++)
        {
            var scale = weights.SharedExpertGate is null ? 1f : 1f / (1f + MathF.Exp(-b.SharedGateLogits[t]));
            Kernels.AddScaled(output.AsSpan(t * h, h), b.SharedOutput.AsSpan(t * h, h), scale);
        }
    }

    /// <summary>Chooses the token's experts and gate weights and records them in its routing row.</summary>
    private void Route(ForwardBatch batch, MoeWeights weights, int moeIndex, int t, Buffers b)
    {
        int k = _config.NumExpertsPerTok, experts = _config.NumExperts;
        var scores = b.RouterProbabilities.AsSpan(t * experts, experts);
        if (!TensorPrimitives.IsFiniteAll(scores))
        {
            batch.TokenStatus[t] |= (byte)TokenFault.NonFiniteRouterLogits;
            ReplaceNonFinite(scores);
        }
        var selection = _router.Score(scores, weights.CorrectionBias);
        RouterObserver?.Invoke(moeIndex, t, selection.ToArray());
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
            _router.Select(selected);
        }
        _router.Weigh(scores, selected, b.GateWeights.AsSpan(t * k, k));
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

    private void RunExpert(SwiGluMlp expert, Buffers b, int firstRow, int rows)
    {
        int h = _config.HiddenSize, inter = _config.MoeIntermediateSize;
        var input = b.Gathered.AsSpan(firstRow * h, rows * h);
        var gate = b.Gate.AsSpan(firstRow * inter, rows * inter);
        var up = b.Up.AsSpan(firstRow * inter, rows * inter);
        var output = b.ExpertOutput.AsSpan(firstRow * h, rows * h);
        Kernels.MatMul(expert.Gate.Weight, h, inter, input, rows, gate, 0, inter);
        Kernels.MatMul(expert.Up.Weight, h, inter, input, rows, up, 0, inter);
        AddBias(gate, expert.Gate.Bias);
        AddBias(up, expert.Up.Bias);
        if (_config.SwigluLimit is { } limitValue)
        {
            float limit = (float)limitValue, alpha = (float)_config.SwigluAlpha;
            for (var i = 0; i < gate.Length; i++)
            {
                var g = MathF.Min(gate[i], limit);
                var u = Math.Clamp(up[i], -limit, limit);
                gate[i] = (u + 1f) * (g / (1f + MathF.Exp(-alpha * g)));
            }
        }
        else
        {
            for (var i = 0; i < gate.Length; i++)
            {
                gate[i] = Kernels.Silu(gate[i]) * up[i];
            }
        }
        Kernels.MatMul(expert.Down.Weight, inter, h, gate, rows, output, 0, h);
        AddBias(output, expert.Down.Bias);
    }

    /// <summary>Adds a bias to every row of <paramref name="rows"/>; nothing when there is none.</summary>
    private static void AddBias(Span<float> rows, float[]? bias)
    {
        if (bias is null)
        {
            return;
        }
        for (var start = 0; start < rows.Length; start += bias.Length)
        {
            var row = rows.Slice(start, bias.Length);
            for (var i = 0; i < row.Length; i++)
            {
                row[i] += bias[i];
            }
        }
    }

    private Buffers EnsureBuffers(int tokens)
    {
        if (_buffers.Capacity < tokens)
        {
            _buffers = new Buffers(
                Math.Max(tokens, _buffers.Capacity * 2),
                _config.NumExperts,
                _config.NumExpertsPerTok,
                _config.HiddenSize,
                _config.MoeIntermediateSize,
                _config.SharedExpertIntermediateSize);
        }
        return _buffers;
    }

    private sealed class Buffers(int capacity, int experts, int k, int hidden, int inter, int sharedInter)
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

        public float[] SharedGate { get; } = new float[capacity * sharedInter];

        public float[] SharedUp { get; } = new float[capacity * sharedInter];

        public float[] SharedOutput { get; } = new float[sharedInter > 0 ? capacity * hidden : 0];

        public float[] SharedGateLogits { get; } = new float[sharedInter > 0 ? capacity : 0];
    }
}
