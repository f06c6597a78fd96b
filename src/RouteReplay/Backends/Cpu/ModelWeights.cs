using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Backends.Cpu;

/// <summary>
/// A linear layer's weight, <c>[OutDim, InDim]</c> row-major, with an optional bias. A weight that is exactly
/// representable in bf16 may be held as <see cref="Bf16Weight"/> only (then <see cref="Weight"/> is empty).
/// </summary>
internal sealed record Linear(float[] Weight, int OutDim, int InDim, float[]? Bias = null, ushort[]? Bf16Weight = null);

/// <summary>A SwiGLU MLP: <c>down(silu(gate(x)) * up(x))</c>. Used for dense layers and for each expert.</summary>
internal sealed record SwiGluMlp(Linear Gate, Linear Up, Linear Down);

/// <summary>The attention projections; the q/k norm weights are null when the family has none, the sinks (one logit a head) unless it has them.</summary>
internal sealed record AttentionWeights(Linear Q, Linear K, Linear V, Linear O, float[]? QNorm, float[]? KNorm, float[]? Sinks = null);

/// <summary>
/// A sparse MoE block: the router <c>[NumExperts, Hidden]</c> (with its bias in gpt-oss), one SwiGLU MLP per expert,
/// and the optional shared expert with its optional sigmoid gate <c>[1, Hidden]</c>.
/// </summary>
internal sealed record MoeWeights(Linear Router, SwiGluMlp[] Experts, SwiGluMlp? SharedExpert = null, Linear? SharedExpertGate = null)
{
    /// <summary>DeepSeek-V3's <c>e_score_correction_bias</c> (selection only); empty when the router has none.</summary>
    public float[] CorrectionBias { get; init; } = [];
}

/// <summary>
/// Multi-head latent attention: the query projection (direct, or <see cref="QCompress"/>, its norm, then
/// <see cref="Q"/>), the KV compression (latent then RoPE key), the latent's norm, the per-head expansion
/// <c>[heads * (nope + v), kv_lora_rank]</c> and the output projection.
/// </summary>
internal sealed record LatentAttentionWeights(
    Linear? QCompress, float[]? QCompressNorm, Linear Q, Linear KvCompress, float[] KvNorm, Linear KvExpand, Linear O);

/// <summary>One decoder layer: exactly one of <see cref="Attention"/> and <see cref="Latent"/>, and one of <see cref="Dense"/> and <see cref="Moe"/>.</summary>
internal sealed record LayerWeights(
    float[] InputNorm, float[] PostAttentionNorm, AttentionWeights? Attention, SwiGluMlp? Dense, MoeWeights? Moe, LatentAttentionWeights? Latent = null);

/// <summary>The fp32 weights of a checkpoint of one of the <see cref="ModelFamilies"/>, read with the tensor names transformers uses.</summary>
internal sealed class ModelWeights
{
    private ModelWeights(Linear embedding, LayerWeights[] layers, float[] finalNorm, Linear lmHead)
    {
        Embedding = embedding;
        Layers = layers;
        FinalNorm = finalNorm;
        LmHead = lmHead;
    }

    /// <summary><c>[VocabSize, Hidden]</c>, as a matrix so a tied output projection can share it.</summary>
    public Linear Embedding { get; }

    public LayerWeights[] Layers { get; }

    public float[] FinalNorm { get; }

    /// <summary>The output projection; shares <see cref="Embedding"/> when the embeddings are tied.</summary>
    public Linear LmHead { get; }

    public static ModelWeights Load(Checkpoint checkpoint)
    {
        var c = checkpoint.Config;
        long h = c.HiddenSize;
        var embedding = Compact(checkpoint.ReadFloat32("model.embed_tokens.weight", c.VocabSize, h), c.VocabSize, c.HiddenSize);
        var layers = new LayerWeights[c.NumHiddenLayers];
        Parallel.For(0, c.NumHiddenLayers, i => layers[i] = LoadLayer(checkpoint, c, i));
        var finalNorm = checkpoint.ReadFloat32("model.norm.weight", h);
        var lmHead = c.TieWordEmbeddings
            ? embedding
            : Compact(checkpoint.ReadFloat32("lm_head.weight", c.VocabSize, h), c.VocabSize, c.HiddenSize);
        return new ModelWeights(embedding, layers, finalNorm, lmHead);
    }

    private static LayerWeights LoadLayer(Checkpoint checkpoint, ModelConfig c, int layer)
    {
        var prefix = $"model.layers.{layer}";
        var hd = c.HeadDim;
        var normWidths = WeightLayout.QkNormWidths(c);
        var latent = c.Mla is { } mla ? ReadLatentAttention(checkpoint, c, mla, $"{prefix}.self_attn") : null;
        var attention = latent is not null ? null : new AttentionWeights(
            ReadLinear(checkpoint, $"{prefix}.self_attn.q_proj", c.NumAttentionHeads * hd, c.HiddenSize, c.AttentionBias),
            ReadLinear(checkpoint, $"{prefix}.self_attn.k_proj", c.NumKeyValueHeads * hd, c.HiddenSize, c.AttentionBias),
            ReadLinear(checkpoint, $"{prefix}.self_attn.v_proj", c.NumKeyValueHeads * hd, c.HiddenSize, c.AttentionBias),
            ReadLinear(checkpoint, $"{prefix}.self_attn.o_proj", c.HiddenSize, c.NumAttentionHeads * hd, c.OutputProjectionBias),
            normWidths is var (q, _) ? checkpoint.ReadFloat32($"{prefix}.self_attn.q_norm.weight", q) : null,
            normWidths is var (_, k) ? checkpoint.ReadFloat32($"{prefix}.self_attn.k_norm.weight", k) : null,
            c.AttentionSinks ? checkpoint.ReadFloat32($"{prefix}.self_attn.sinks", c.NumAttentionHeads) : null);
        var inputNorm = checkpoint.ReadFloat32($"{prefix}.input_layernorm.weight", c.HiddenSize);
        var postNorm = checkpoint.ReadFloat32($"{prefix}.post_attention_layernorm.weight", c.HiddenSize);
        if (!c.IsMoeLayer(layer))
        {
            var dense = ReadMlp(checkpoint, $"{prefix}.mlp", ("gate_proj", "up_proj", "down_proj"), c.IntermediateSize, c.HiddenSize);
            return new LayerWeights(inputNorm, postNorm, attention, dense, null, latent);
        }
        var moe = MoePrefix(checkpoint, c, layer);
        var router = ReadLinear(checkpoint, $"{moe}.{WeightLayout.RouterName(c)}", c.NumExperts, c.HiddenSize, c.Router.LogitBias);
        var experts = c.ModelType == ModelFamilies.GptOss
            ? GptOssExperts.Read(checkpoint, $"{moe}.experts", c)
            : checkpoint.HasTensor($"{moe}.experts.gate_up_proj")
            ? ReadFusedExperts(checkpoint, $"{moe}.experts", c)
            : Enumerable.Range(0, c.NumExperts)
                .Select(e => ReadMlp(checkpoint, $"{moe}.experts.{e}", WeightLayout.ExpertProjections(c), c.MoeIntermediateSize, c.HiddenSize))
                .ToArray();
        var shared = c.SharedExpertIntermediateSize > 0
            ? ReadMlp(checkpoint, WeightLayout.SharedExpertPrefix(c, moe), ("gate_proj", "up_proj", "down_proj"), c.SharedExpertIntermediateSize, c.HiddenSize)
            : null;
        var sharedGate = c.SharedExpertGate ? ReadLinear(checkpoint, $"{moe}.shared_expert_gate", 1, c.HiddenSize, bias: false) : null;
        var moeWeights = new MoeWeights(router, experts, shared, sharedGate)
        {
            CorrectionBias = c.Router.CorrectionBias ? checkpoint.ReadFloat32($"{moe}.gate.e_score_correction_bias", c.NumExperts) : [],
        };
        return new LayerWeights(inputNorm, postNorm, attention, null, moeWeights, latent);
    }

    private static LatentAttentionWeights ReadLatentAttention(Checkpoint checkpoint, ModelConfig c, MlaSpec mla, string prefix)
    {
        int h = c.HiddenSize, heads = c.NumAttentionHeads;
        var compressed = mla.QLoraRank > 0;
        return new LatentAttentionWeights(
            compressed ? ReadLinear(checkpoint, $"{prefix}.q_a_proj", mla.QLoraRank, h, c.AttentionBias) : null,
            compressed ? checkpoint.ReadFloat32($"{prefix}.q_a_layernorm.weight", mla.QLoraRank) : null,
            compressed
                ? ReadLinear(checkpoint, $"{prefix}.q_b_proj", heads * mla.QkHeadDim, mla.QLoraRank, bias: false)
                : ReadLinear(checkpoint, $"{prefix}.q_proj", heads * mla.QkHeadDim, h, bias: false),
            ReadLinear(checkpoint, $"{prefix}.kv_a_proj_with_mqa", mla.KvLoraRank + mla.QkRopeHeadDim, h, c.AttentionBias),
            checkpoint.ReadFloat32($"{prefix}.kv_a_layernorm.weight", mla.KvLoraRank),
            ReadLinear(checkpoint, $"{prefix}.kv_b_proj", heads * (mla.QkNopeHeadDim + mla.VHeadDim), mla.KvLoraRank, bias: false),
            ReadLinear(checkpoint, $"{prefix}.o_proj", h, heads * mla.VHeadDim, c.OutputProjectionBias));
    }

    /// <summary>
    /// The family's own prefix (<see cref="WeightLayout.MoePrefix"/>), or <c>mlp</c> when a checkpoint saved from
    /// transformers 5's in-memory layout uses that instead (Mixtral).
    /// </summary>
    private static string MoePrefix(Checkpoint checkpoint, ModelConfig c, int layer)
    {
        var own = WeightLayout.MoePrefix(c, layer);
        var plain = $"model.layers.{layer}.mlp";
        return !checkpoint.HasTensor($"{own}.gate.weight") && checkpoint.HasTensor($"{plain}.gate.weight") ? plain : own;
    }

    /// <summary>Writes token <paramref name="token"/>'s embedding into <paramref name="destination"/>.</summary>
    public void Embed(int token, Span<float> destination)
    {
        var h = Embedding.InDim;
        if (Embedding.Bf16Weight is { } bf16)
        {
            Kernels.Bf16ToSingle(bf16.AsSpan(token * h, h), destination);
        }
        else
        {
            Embedding.Weight.AsSpan(token * h, h).CopyTo(destination);
        }
    }

    /// <summary>The vocabulary-sized matrices are the largest: keep them as bf16 (half the memory) when that loses nothing.</summary>
    private static Linear Compact(float[] weight, int outDim, int inDim) =>
        Kernels.ToBf16IfLossless(weight) is { } bf16 ? new Linear([], outDim, inDim, null, bf16) : new Linear(weight, outDim, inDim);

    private static SwiGluMlp ReadMlp(Checkpoint checkpoint, string prefix, (string Gate, string Up, string Down) names, int intermediate, int hidden) => new(
        ReadLinear(checkpoint, $"{prefix}.{names.Gate}", intermediate, hidden, bias: false),
        ReadLinear(checkpoint, $"{prefix}.{names.Up}", intermediate, hidden, bias: false),
        ReadLinear(checkpoint, $"{prefix}.{names.Down}", hidden, intermediate, bias: false));

    /// <summary>The fused layout transformers 5 keeps in memory: <c>gate_up_proj [E, 2I, H]</c>, <c>down_proj [E, H, I]</c>.</summary>
    private static SwiGluMlp[] ReadFusedExperts(Checkpoint checkpoint, string prefix, ModelConfig c)
    {
        int e = c.NumExperts, i = c.MoeIntermediateSize, h = c.HiddenSize;
        var gateUp = checkpoint.ReadFloat32($"{prefix}.gate_up_proj", e, 2L * i, h);
        var down = checkpoint.ReadFloat32($"{prefix}.down_proj", e, h, i);
        var experts = new SwiGluMlp[e];
        for (var x = 0; x < e; x++)
        {
            var gateUpBase = (long)x * 2 * i * h;
            experts[x] = new SwiGluMlp(
                new Linear(gateUp.AsSpan((int)gateUpBase, i * h).ToArray(), i, h),
                new Linear(gateUp.AsSpan((int)(gateUpBase + (long)i * h), i * h).ToArray(), i, h),
                new Linear(down.AsSpan(x * h * i, h * i).ToArray(), h, i));
        }
        return experts;
    }

    private static Linear ReadLinear(Checkpoint checkpoint, string prefix, int outDim, int inDim, bool bias) => new(
        checkpoint.ReadFloat32($"{prefix}.weight", outDim, inDim),
        outDim,
        inDim,
        bias ? checkpoint.ReadFloat32($"{prefix}.bias", outDim) : null);
}
