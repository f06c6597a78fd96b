using System.Buffers;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Routing;

namespace RouteReplay.Backends.Cpu;

/// <summary>
/// The fp32 CPU forward of Qwen3-MoE over a paged KV cache. Each token follows one per-row code path whether it is
/// part of a prefill chunk or a decode, attention reads K and V back from the cache in position order, and every
/// reduction has a fixed order, so a token's outputs do not depend on which other tokens share its batch.
/// </summary>
public sealed partial class CpuBackend : IModelBackend
{
    private ModelWeights? _weights;
    private CpuKvCache? _cache;
    private readonly RotaryEmbedding _rope;
    private readonly MoeBlock _moe;
    private readonly LatentAttention? _latent;
    private readonly float _eps;
    private readonly float _attentionScale;
    private Scratch _scratch = new(0, null!);
    private float[] _logits = [];

    private CpuBackend(ModelConfig config, ModelWeights weights, int numBlocks, int blockSize)
    {
        Config = config;
        RoutingFormat = RoutingFormat.For(config);
        _weights = weights;
        _cache = new CpuKvCache(config, numBlocks, blockSize);
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        _rope = new RotaryEmbedding(config);
        _moe = new MoeBlock(config, RoutingFormat);
        _latent = config.Mla is null ? null : new LatentAttention(config);
        _eps = (float)config.RmsNormEps;
        _attentionScale = 1f / MathF.Sqrt(config.HeadDim);
    }

    /// <summary>Loads the checkpoint's weights as fp32 and allocates a KV cache of <paramref name="numBlocks"/> blocks.</summary>
    public static CpuBackend Load(Checkpoint checkpoint, int numBlocks, int blockSize) =>
        new(checkpoint.Config, ModelWeights.Load(checkpoint), numBlocks, blockSize);

    public ModelConfig Config { get; }

    public RoutingFormat RoutingFormat { get; }

    public int BlockSize { get; }

    public int NumBlocks { get; }

    /// <summary>Sees every token's fp32 router probabilities (MoE layer index, token, probabilities); for checks.</summary>
    internal Action<int, int, float[]>? RouterObserver
    {
        get => _moe.RouterObserver;
        set => _moe.RouterObserver = value;
    }

    public void Forward(ForwardBatch batch)
    {
        var n = batch.TokenCount;
        if (n == 0)
        {
            return;
        }
        var live = LiveWeights;
        var cache = LiveCache;
        Validate(batch);
        var s = EnsureScratch(n);
        int h = Config.HiddenSize;
        for (var t = 0; t < n; t++)
        {
            live.Embed(batch.TokenIds[t], s.Hidden.AsSpan(t * h, h));
            _rope.Angles(batch.Positions[t], s.Cos.AsSpan(t * s.HalfHeadDim, s.HalfHeadDim), s.Sin.AsSpan(t * s.HalfHeadDim, s.HalfHeadDim));
        }
        var moeIndex = 0;
        for (var layer = 0; layer < Config.NumHiddenLayers; layer++)
        {
            var weights = live.Layers[layer];
            NormRows(s.Hidden, weights.InputNorm, s.Normed, n, h);
            if (weights.Latent is { } latent)
            {
                _latent!.Forward(batch, cache, layer, latent, s.Normed, s.Cos, s.Sin, s.Projected, n);
            }
            else
            {
                Attention(batch, cache, layer, weights.Attention!, s);
            }
            AddRows(s.Hidden, s.Projected, n * h);
            NormRows(s.Hidden, weights.PostAttentionNorm, s.Normed, n, h);
            if (weights.Moe is { } moe)
            {
                _moe.Forward(moe, batch, moeIndex++, s.Normed, s.Projected, n);
            }
            else
            {
                DenseMlp(weights.Dense!, s, n);
            }
            AddRows(s.Hidden, s.Projected, n * h);
        }
        ComputeLogits(batch, live, s);
    }

    private void Validate(ForwardBatch batch)
    {
        var slots = NumBlocks * BlockSize;
        for (var t = 0; t < batch.TokenCount; t++)
        {
            if ((uint)batch.TokenIds[t] >= (uint)Config.VocabSize)
            {
                throw new ArgumentOutOfRangeException(nameof(batch), $"token id {batch.TokenIds[t]} is outside the vocabulary of {Config.VocabSize}");
            }
            if ((uint)batch.SlotMapping[t] >= (uint)slots)
            {
                throw new ArgumentOutOfRangeException(nameof(batch), $"slot {batch.SlotMapping[t]} is outside the KV cache of {slots} slots");
            }
            if ((uint)batch.Positions[t] >= (uint)(batch.MaxBlocksPerSequence * BlockSize))
            {
                throw new ArgumentOutOfRangeException(nameof(batch), $"position {batch.Positions[t]} is beyond the block table");
            }
        }
    }

    private Scratch EnsureScratch(int tokens)
    {
        if (_scratch.Capacity < tokens)
        {
            _scratch = new Scratch(Math.Max(tokens, _scratch.Capacity * 2), Config);
        }
        return _scratch;
    }

    private void NormRows(float[] source, float[] weight, float[] destination, int tokens, int width) =>
        ParallelMath.For(tokens >= 64 ? Environment.ProcessorCount : 1, part =>
        {
            var parts = tokens >= 64 ? Environment.ProcessorCount : 1;
            for (var t = part; t < tokens; t += parts)
            {
                Kernels.RmsNorm(source.AsSpan(t * width, width), weight, _eps, destination.AsSpan(t * width, width));
            }
        });

    private static void AddRows(float[] accumulator, float[] addend, int count)
    {
        for (var i = 0; i < count; i++)
        {
            accumulator[i] += addend[i];
        }
    }

    private void Attention(ForwardBatch batch, CpuKvCache cache, int layer, AttentionWeights w, Scratch s)
    {
        var n = batch.TokenCount;
        int hd = Config.HeadDim, heads = Config.NumAttentionHeads, kvHeads = Config.NumKeyValueHeads;
        int qDim = heads * hd, kvDim = kvHeads * hd;
        ParallelMath.MatMul(w.Q, s.Normed, 0, n, s.Query, 0);
        ParallelMath.MatMul(w.K, s.Normed, 0, n, s.Key, 0);
        ParallelMath.MatMul(w.V, s.Normed, 0, n, s.Value, 0);
        var clip = Config.ClipQkv is { } limit ? (float)limit : float.PositiveInfinity;
        Clip(s.Value.AsSpan(0, n * kvDim), clip);
        var keys = cache.Keys[layer];
        var values = cache.Values[layer];
        for (var t = 0; t < n; t++)
        {
            var cos = s.Cos.AsSpan(t * s.HalfHeadDim, s.HalfHeadDim);
            var sin = s.Sin.AsSpan(t * s.HalfHeadDim, s.HalfHeadDim);
            NormProjection(s.Query.AsSpan(t * qDim, qDim), w.QNorm, hd);
            NormProjection(s.Key.AsSpan(t * kvDim, kvDim), w.KNorm, hd);
            Clip(s.Query.AsSpan(t * qDim, qDim), clip);
            Clip(s.Key.AsSpan(t * kvDim, kvDim), clip);
            for (var head = 0; head < heads; head++)
            {
                RotaryEmbedding.Apply(s.Query.AsSpan((t * qDim) + (head * hd), hd), cos, sin);
            }
            var slot = batch.SlotMapping[t];
            for (var head = 0; head < kvHeads; head++)
            {
                RotaryEmbedding.Apply(s.Key.AsSpan((t * kvDim) + (head * hd), hd), cos, sin);
            }
            s.Key.AsSpan(t * kvDim, kvDim).CopyTo(keys.AsSpan(slot * kvDim, kvDim));
            s.Value.AsSpan(t * kvDim, kvDim).CopyTo(values.AsSpan(slot * kvDim, kvDim));
        }
        var window = Config.WindowOf(layer);
        ParallelMath.For(n * heads >= 8 ? Math.Min(n * heads, Environment.ProcessorCount * 4) : 1, part =>
        {
            var parts = n * heads >= 8 ? Math.Min(n * heads, Environment.ProcessorCount * 4) : 1;
            for (var item = part; item < n * heads; item += parts)
            {
                AttendOneHead(batch, cache, item / heads, item % heads, window, w.Sinks, keys, values, s);
            }
        });
        ParallelMath.MatMul(w.O, s.Attended, 0, n, s.Projected, 0);
    }

    /// <summary>
    /// A softmax over the scores and one more logit, the head's sink, whose share is dropped: the weights sum to less
    /// than one when the sink is large (gpt-oss).
    /// </summary>
    private static void SoftmaxWithSink(Span<float> scores, float sink)
    {
        var max = sink;
        foreach (var x in scores)
        {
            max = MathF.Max(max, x);
        }
        var sum = MathF.Exp(sink - max);
        for (var i = 0; i < scores.Length; i++)
        {
            scores[i] = MathF.Exp(scores[i] - max);
            sum += scores[i];
        }
        for (var i = 0; i < scores.Length; i++)
        {
            scores[i] /= sum;
        }
    }

    /// <summary>RMSNorm of a q or k projection: per head when the weight is one head wide, else over the whole projection.</summary>
    private void NormProjection(Span<float> projection, float[]? weight, int headDim)
    {
        if (weight is null)
        {
            return;
        }
        if (weight.Length == projection.Length)
        {
            Kernels.RmsNorm(projection, weight, _eps, projection);
            return;
        }
        for (var start = 0; start < projection.Length; start += headDim)
        {
            var head = projection.Slice(start, headDim);
            Kernels.RmsNorm(head, weight, _eps, head);
        }
    }

    /// <summary>OLMoE's <c>clip_qkv</c>, after the q/k norms; nothing when the limit is infinite.</summary>
    private static void Clip(Span<float> values, float limit)
    {
        if (float.IsPositiveInfinity(limit))
        {
            return;
        }
        foreach (ref var x in values)
        {
            x = Math.Clamp(x, -limit, limit);
        }
    }

    /// <summary>
    /// Causal attention of one query head over positions <c>0..p</c> of its sequence (the last
    /// <paramref name="window"/> of them when the layer slides), read from the cache.
    /// </summary>
    private void AttendOneHead(ForwardBatch batch, CpuKvCache cache, int t, int head, int window, float[]? sinks, float[] keys, float[] values, Scratch s)
    {
        int hd = Config.HeadDim, kvDim = Config.NumKeyValueHeads * hd;
        var kvHead = head / (Config.NumAttentionHeads / Config.NumKeyValueHeads);
        var position = batch.Positions[t];
        var blockTable = batch.BlockTable(batch.TokenSequence[t]);
        var q = s.Query.AsSpan((t * Config.NumAttentionHeads * hd) + (head * hd), hd);
        var output = s.Attended.AsSpan((t * Config.NumAttentionHeads * hd) + (head * hd), hd);
        var first = window > 0 ? Math.Max(0, position - window + 1) : 0;
        var scores = ArrayPool<float>.Shared.Rent(position + 1 - first);
        try
        {
            var span = scores.AsSpan(0, position + 1 - first);
            for (var j = first; j <= position; j++)
            {
                var slot = cache.SlotOf(blockTable, j);
                span[j - first] = Kernels.Dot(q, keys.AsSpan((slot * kvDim) + (kvHead * hd), hd)) * _attentionScale;
            }
            if (sinks is null)
            {
                Kernels.Softmax(span);
            }
            else
            {
                SoftmaxWithSink(span, sinks[head]);
            }
            output.Clear();
            for (var j = first; j <= position; j++)
            {
                var slot = cache.SlotOf(blockTable, j);
                Kernels.AddScaled(output, values.AsSpan((slot * kvDim) + (kvHead * hd), hd), span[j - first]);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scores);
        }
    }

    private static void DenseMlp(SwiGluMlp mlp, Scratch s, int n)
    {
        ParallelMath.MatMul(mlp.Gate, s.Normed, 0, n, s.Gate, 0);
        ParallelMath.MatMul(mlp.Up, s.Normed, 0, n, s.Up, 0);
        var count = n * mlp.Gate.OutDim;
        for (var i = 0; i < count; i++)
        {
            s.Gate[i] = Kernels.Silu(s.Gate[i]) * s.Up[i];
        }
        ParallelMath.MatMul(mlp.Down, s.Gate, 0, n, s.Projected, 0);
    }

    private void ComputeLogits(ForwardBatch batch, ModelWeights weights, Scratch s)
    {
        var rows = batch.LogitRowCount;
        if (rows == 0)
        {
            return;
        }
        var h = Config.HiddenSize;
        for (var r = 0; r < rows; r++)
        {
            var t = batch.LogitTokens[r];
            Kernels.RmsNorm(s.Hidden.AsSpan(t * h, h), weights.FinalNorm, _eps, s.Normed.AsSpan(r * h, h));
        }
        var vocab = Config.VocabSize;
        if (_logits.Length < rows * vocab)
        {
            _logits = new float[rows * vocab];
        }
        ParallelMath.MatMul(weights.LmHead, s.Normed, 0, rows, _logits, 0);
        for (var r = 0; r < rows; r++)
        {
            _logits.AsSpan(r * vocab, vocab).CopyTo(batch.LogitRow(r));
        }
    }

    public void Dispose()
    {
    }

    /// <summary>Activation buffers for up to <see cref="Capacity"/> tokens, reused across steps.</summary>
    private sealed class Scratch
    {
        public Scratch(int capacity, ModelConfig config)
        {
            Capacity = capacity;
            if (capacity == 0)
            {
                Hidden = Normed = Query = Key = Value = Attended = Projected = Gate = Up = Cos = Sin = [];
                return;
            }
            int h = config.HiddenSize, qDim = config.NumAttentionHeads * config.HeadDim, kvDim = config.NumKeyValueHeads * config.HeadDim;
            HalfHeadDim = config.HeadDim / 2;
            Hidden = new float[capacity * h];
            Normed = new float[capacity * h];
            Projected = new float[capacity * h];
            Query = new float[capacity * qDim];
            Attended = new float[capacity * qDim];
            Key = new float[capacity * kvDim];
            Value = new float[capacity * kvDim];
            Gate = new float[capacity * config.IntermediateSize];
            Up = new float[capacity * config.IntermediateSize];
            Cos = new float[capacity * HalfHeadDim];
            Sin = new float[capacity * HalfHeadDim];
        }

        public int Capacity { get; }

        public int HalfHeadDim { get; }

        public float[] Hidden { get; }

        public float[] Normed { get; }

        public float[] Projected { get; }

        public float[] Query { get; }

        public float[] Attended { get; }

        public float[] Key { get; }

        public float[] Value { get; }

        public float[] Gate { get; }

        public float[] Up { get; }

        public float[] Cos { get; }

        public float[] Sin { get; }
    }
}
