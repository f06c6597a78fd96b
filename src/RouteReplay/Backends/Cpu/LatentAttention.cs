using System.Buffers;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Backends.Cpu;

/// <summary>
/// Multi-head latent attention over the paged cache, in fp32. The cache holds, per token and layer, only the normed
/// latent <c>c</c> (<c>kv_lora_rank</c>) and the rotated RoPE key <c>r</c> (<c>qk_rope_head_dim</c>). A head's key
/// is <c>[W_k c | r]</c> and its value <c>W_v c</c>; attention is computed in the latent space, which is the same sum
/// reordered: score = <c>(W_k^T q_nope) . c + q_rope . r</c>, output = <c>W_v (sum_j p_j c_j)</c>. Each (token, head)
/// follows one code path in position order, so results do not depend on the batch.
/// </summary>
internal sealed class LatentAttention
{
    private readonly ModelConfig _config;
    private readonly MlaSpec _mla;
    private readonly float _eps;
    private readonly float _scale;
    private float[] _queryCompressed = [];
    private float[] _query = [];
    private float[] _latent = [];
    private float[] _attended = [];

    public LatentAttention(ModelConfig config)
    {
        _config = config;
        _mla = config.Mla ?? throw new ArgumentException("the model has no latent attention", nameof(config));
        _eps = (float)config.RmsNormEps;
        _scale = (float)(_mla.SoftmaxScaleFactor / Math.Sqrt(_mla.QkHeadDim));
    }

    /// <summary>Writes the layer's attention output (after <c>o_proj</c>) for <paramref name="n"/> tokens into <paramref name="output"/>.</summary>
    public void Forward(
        ForwardBatch batch, CpuKvCache cache, int layer, LatentAttentionWeights w, float[] normed, float[] cos, float[] sin, float[] output, int n)
    {
        int heads = _config.NumAttentionHeads, qk = _mla.QkHeadDim, lora = _mla.KvLoraRank, rope = _mla.QkRopeHeadDim;
        int width = lora + rope, half = rope / 2;
        Ensure(n);
        if (w.QCompress is { } compress)
        {
            ParallelMath.MatMul(compress, normed, 0, n, _queryCompressed, 0);
            for (var t = 0; t < n; t++)
            {
                var row = _queryCompressed.AsSpan(t * compress.OutDim, compress.OutDim);
                Kernels.RmsNorm(row, w.QCompressNorm!, _eps, row);
            }
            ParallelMath.MatMul(w.Q, _queryCompressed, 0, n, _query, 0);
        }
        else
        {
            ParallelMath.MatMul(w.Q, normed, 0, n, _query, 0);
        }
        ParallelMath.MatMul(w.KvCompress, normed, 0, n, _latent, 0);
        var keys = cache.Keys[layer];
        for (var t = 0; t < n; t++)
        {
            var c = cos.AsSpan(t * half, half);
            var s = sin.AsSpan(t * half, half);
            var entry = _latent.AsSpan(t * width, width);
            Kernels.RmsNorm(entry[..lora], w.KvNorm, _eps, entry[..lora]);
            Rotate(entry[lora..], c, s);
            for (var head = 0; head < heads; head++)
            {
                Rotate(_query.AsSpan((t * heads * qk) + (head * qk) + _mla.QkNopeHeadDim, rope), c, s);
            }
            entry.CopyTo(keys.AsSpan(batch.SlotMapping[t] * width, width));
        }
        var parts = n * heads >= 8 ? Math.Min(n * heads, Environment.ProcessorCount * 4) : 1;
        ParallelMath.For(parts, part =>
        {
            for (var item = part; item < n * heads; item += parts)
            {
                AttendOneHead(batch, cache, keys, w.KvExpand, item / heads, item % heads);
            }
        });
        ParallelMath.MatMul(w.O, _attended, 0, n, output, 0);
    }

    private void AttendOneHead(ForwardBatch batch, CpuKvCache cache, float[] keys, Linear expand, int t, int head)
    {
        int heads = _config.NumAttentionHeads, qk = _mla.QkHeadDim, nope = _mla.QkNopeHeadDim, lora = _mla.KvLoraRank;
        int v = _mla.VHeadDim, width = lora + _mla.QkRopeHeadDim, rows = nope + v;
        var query = _query.AsSpan((t * heads * qk) + (head * qk), qk);
        var position = batch.Positions[t];
        var blockTable = batch.BlockTable(batch.TokenSequence[t]);
        var pool = ArrayPool<float>.Shared;
        var latentQuery = pool.Rent(lora);
        var context = pool.Rent(lora);
        var scores = pool.Rent(position + 1);
        try
        {
            var q = latentQuery.AsSpan(0, lora);
            q.Clear();
            for (var i = 0; i < nope; i++)
            {
                Kernels.AddScaled(q, expand.Weight.AsSpan(((head * rows) + i) * lora, lora), query[i]);
            }
            var span = scores.AsSpan(0, position + 1);
            for (var j = 0; j <= position; j++)
            {
                var entry = keys.AsSpan(cache.SlotOf(blockTable, j) * width, width);
                span[j] = (Kernels.Dot(q, entry[..lora]) + Kernels.Dot(query[nope..], entry[lora..])) * _scale;
            }
            Kernels.Softmax(span);
            var ctx = context.AsSpan(0, lora);
            ctx.Clear();
            for (var j = 0; j <= position; j++)
            {
                Kernels.AddScaled(ctx, keys.AsSpan(cache.SlotOf(blockTable, j) * width, lora), span[j]);
            }
            var output = _attended.AsSpan((t * heads * v) + (head * v), v);
            for (var i = 0; i < v; i++)
            {
                output[i] = Kernels.Dot(expand.Weight.AsSpan(((head * rows) + nope + i) * lora, lora), ctx);
            }
        }
        finally
        {
            pool.Return(latentQuery);
            pool.Return(context);
            pool.Return(scores);
        }
    }

    /// <summary>RoPE of one rope-width vector: adjacent pairs when the model interleaves (DeepSeek), else halves.</summary>
    private void Rotate(Span<float> x, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        if (!_mla.RopeInterleave)
        {
            RotaryEmbedding.Apply(x, cos, sin);
            return;
        }
        for (var i = 0; i < cos.Length; i++)
        {
            float a = x[2 * i], b = x[(2 * i) + 1];
            x[2 * i] = (a * cos[i]) - (b * sin[i]);
            x[(2 * i) + 1] = (b * cos[i]) + (a * sin[i]);
        }
    }

    private void Ensure(int n)
    {
        int heads = _config.NumAttentionHeads;
        if (_query.Length >= n * heads * _mla.QkHeadDim)
        {
            return;
        }
        var capacity = Math.Max(n, _query.Length / (heads * _mla.QkHeadDim) * 2);
        _queryCompressed = new float[capacity * Math.Max(1, _mla.QLoraRank)];
        _query = new float[capacity * heads * _mla.QkHeadDim];
        _latent = new float[capacity * (_mla.KvLoraRank + _mla.QkRopeHeadDim)];
        _attended = new float[capacity * heads * _mla.VHeadDim];
    }
}
