namespace RouteReplay.Model.Checkpoints;

/// <summary>
/// The architecture of an MoE model of one of the <see cref="ModelFamilies"/>, as read from a Hugging Face
/// <c>config.json</c> (both the transformers 4.x and 5.x spellings). The defaults of the family fields are
/// Qwen3-MoE's. Equality compares the lists by their elements.
/// </summary>
public sealed record ModelConfig
{
    /// <summary>The architecture name of the family (<c>Qwen3MoeForCausalLM</c>, <c>MixtralForCausalLM</c>, ...).</summary>
    public required string Architecture { get; init; }

    /// <summary>The family, as transformers' <c>model_type</c> names it (<see cref="ModelFamilies"/>).</summary>
    public string ModelType { get; init; } = ModelFamilies.Qwen3Moe;

    /// <summary>How the router turns its logits into the selected experts and their weights.</summary>
    public RouterSpec Router { get; init; } = RouterSpec.Softmax;

    /// <summary>
    /// Hidden width of the shared expert every token of an MoE layer also runs (Qwen2-MoE's
    /// <c>shared_expert_intermediate_size</c>; DeepSeek's <c>moe_intermediate_size * n_shared_experts</c>); 0 for none.
    /// </summary>
    public int SharedExpertIntermediateSize { get; init; }

    /// <summary>Whether the shared expert's output is scaled by <c>sigmoid(shared_expert_gate(x))</c> (Qwen2-MoE).</summary>
    public bool SharedExpertGate { get; init; }

    /// <summary>The first this-many layers are dense (<c>first_k_dense_replace</c>).</summary>
    public int FirstKDenseReplace { get; init; }

    /// <summary>Multi-head latent attention (DeepSeek-V3's compressed KV); null for ordinary (grouped-query) attention.</summary>
    public MlaSpec? Mla { get; init; }

    /// <summary>
    /// Floats one slot of one layer's K cache holds: <c>kv_heads * head_dim</c>, or MLA's compressed latent plus its
    /// RoPE key (<c>kv_lora_rank + qk_rope_head_dim</c>).
    /// </summary>
    public int KeyCacheWidth => Mla is { } mla ? mla.KvLoraRank + mla.QkRopeHeadDim : NumKeyValueHeads * HeadDim;

    /// <summary>Floats one slot of one layer's V cache holds; 0 for MLA, whose values come from the latent in K.</summary>
    public int ValueCacheWidth => Mla is null ? NumKeyValueHeads * HeadDim : 0;

    /// <summary>Whether each attention head has a learned sink logit that joins its softmax (gpt-oss <c>sinks</c>).</summary>
    public bool AttentionSinks { get; init; }

    /// <summary>
    /// gpt-oss's clamped SwiGLU in the experts: the gate clamped to at most this, the up projection to +-this, and
    /// <c>(up + 1) * gate * sigmoid(alpha * gate)</c>; null for plain SwiGLU (<c>silu(gate) * up</c>).
    /// </summary>
    public double? SwigluLimit { get; init; }

    /// <summary>The sigmoid gain of gpt-oss's clamped SwiGLU (<c>swiglu_alpha</c>).</summary>
    public double SwigluAlpha { get; init; } = 1.702;

    /// <summary>Whether every expert projection has a bias (gpt-oss).</summary>
    public bool ExpertBiases { get; init; }

    /// <summary>Where q/k RMSNorm applies: per head (Qwen3), over the whole projection (OLMoE), or not at all.</summary>
    public QkNormKind QkNorm { get; init; } = QkNormKind.PerHead;

    /// <summary>OLMoE's <c>clip_qkv</c>: q, k and v are clamped to +-this after projection; null for none.</summary>
    public double? ClipQkv { get; init; }

    /// <summary>Keys a query sees in a sliding-window layer, its own position included (<c>sliding_window</c>); 0 for none.</summary>
    public int SlidingWindow { get; init; }

    /// <summary>
    /// The layers whose attention slides (from <c>layer_types</c>); empty means every layer when
    /// <see cref="SlidingWindow"/> is set.
    /// </summary>
    public IReadOnlyList<int> SlidingLayers { get; init; } = [];

    /// <summary>Width of the residual stream (<c>hidden_size</c>).</summary>
    public required int HiddenSize { get; init; }

    /// <summary>Number of decoder layers (<c>num_hidden_layers</c>).</summary>
    public required int NumHiddenLayers { get; init; }

    /// <summary>Number of query heads (<c>num_attention_heads</c>).</summary>
    public required int NumAttentionHeads { get; init; }

    /// <summary>Number of key/value heads (<c>num_key_value_heads</c>); divides <see cref="NumAttentionHeads"/>.</summary>
    public required int NumKeyValueHeads { get; init; }

    /// <summary>Width of one attention head (<c>head_dim</c>; hidden size / heads when absent).</summary>
    public required int HeadDim { get; init; }

    /// <summary>Hidden width of the dense MLP (<c>intermediate_size</c>), used by non-MoE layers.</summary>
    public required int IntermediateSize { get; init; }

    /// <summary>Hidden width of one expert (<c>moe_intermediate_size</c>).</summary>
    public required int MoeIntermediateSize { get; init; }

    /// <summary>Experts per MoE layer (<c>num_experts</c> or <c>num_local_experts</c>); 0 means a dense model.</summary>
    public required int NumExperts { get; init; }

    /// <summary>Experts each token is routed to (<c>num_experts_per_tok</c>), the K of a routing row.</summary>
    public required int NumExpertsPerTok { get; init; }

    /// <summary>Whether the top-k router probabilities are renormalized to sum to 1 (<c>norm_topk_prob</c>).</summary>
    public bool NormTopkProb { get; init; }

    /// <summary>Every this-many-th layer is MoE (<c>decoder_sparse_step</c>).</summary>
    public int DecoderSparseStep { get; init; } = 1;

    /// <summary>Layers that use the dense MLP regardless of <see cref="DecoderSparseStep"/> (<c>mlp_only_layers</c>).</summary>
    public IReadOnlyList<int> MlpOnlyLayers { get; init; } = [];

    /// <summary>Epsilon of every RMSNorm (<c>rms_norm_eps</c>).</summary>
    public double RmsNormEps { get; init; } = 1e-6;

    /// <summary>RoPE base frequency (<c>rope_theta</c>).</summary>
    public required double RopeTheta { get; init; }

    /// <summary>RoPE scaling, or null for plain RoPE.</summary>
    public RopeScaling? RopeScaling { get; init; }

    /// <summary>Rows of the embedding and the LM head (<c>vocab_size</c>).</summary>
    public required int VocabSize { get; init; }

    /// <summary>Whether the LM head reuses the embedding matrix (<c>tie_word_embeddings</c>).</summary>
    public bool TieWordEmbeddings { get; init; }

    /// <summary>The longest context the model was configured for (<c>max_position_embeddings</c>).</summary>
    public required int MaxPositionEmbeddings { get; init; }

    /// <summary>The weights' dtype: <c>bfloat16</c>, <c>float16</c> or <c>float32</c> (<c>torch_dtype</c> or <c>dtype</c>).</summary>
    public required string DType { get; init; }

    /// <summary>Whether the q, k and v projections have biases (<c>attention_bias</c>; always for Qwen2-MoE).</summary>
    public bool AttentionBias { get; init; }

    /// <summary>Whether the output projection has a bias (with <c>attention_bias</c>, except in Qwen2-MoE).</summary>
    public bool OutputProjectionBias { get; init; }

    /// <summary>End-of-sequence token ids from <c>eos_token_id</c> (empty when absent).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    /// <summary>The indices of the MoE layers, ascending.</summary>
    public IReadOnlyList<int> MoeLayers => Enumerable.Range(0, NumHiddenLayers).Where(IsMoeLayer).ToArray();

    /// <summary>Whether decoder layer <paramref name="layer"/> uses the sparse MoE block rather than the dense MLP.</summary>
    public bool IsMoeLayer(int layer) =>
        NumExperts > 0 && layer >= FirstKDenseReplace && !MlpOnlyLayers.Contains(layer) && (layer + 1) % DecoderSparseStep == 0;

    /// <summary>The sliding window of layer <paramref name="layer"/>'s attention; 0 when it sees the whole context.</summary>
    public int WindowOf(int layer) =>
        SlidingWindow > 0 && (SlidingLayers.Count == 0 || SlidingLayers.Contains(layer)) ? SlidingWindow : 0;

    /// <summary>Reads and validates a <c>config.json</c>.</summary>
    /// <exception cref="CheckpointException">The file is missing, malformed, incomplete or not a Qwen3-MoE config.</exception>
    public static ModelConfig Load(string configJsonPath) =>
        Parse(JsonConfigDocument.ReadText(configJsonPath), configJsonPath);

    /// <summary>Parses and validates the text of a <c>config.json</c>; <paramref name="fileName"/> is used in errors.</summary>
    /// <exception cref="CheckpointException">The text is malformed, incomplete or not a Qwen3-MoE config.</exception>
    public static ModelConfig Parse(string json, string fileName) => ModelConfigParser.Parse(json, fileName);

    /// <inheritdoc />
    public bool Equals(ModelConfig? other) =>
        other is not null
        && Architecture == other.Architecture
        && HiddenSize == other.HiddenSize
        && NumHiddenLayers == other.NumHiddenLayers
        && NumAttentionHeads == other.NumAttentionHeads
        && NumKeyValueHeads == other.NumKeyValueHeads
        && HeadDim == other.HeadDim
        && IntermediateSize == other.IntermediateSize
        && MoeIntermediateSize == other.MoeIntermediateSize
        && NumExperts == other.NumExperts
        && NumExpertsPerTok == other.NumExpertsPerTok
        && NormTopkProb == other.NormTopkProb
        && DecoderSparseStep == other.DecoderSparseStep
        && MlpOnlyLayers.SequenceEqual(other.MlpOnlyLayers)
        && RmsNormEps.Equals(other.RmsNormEps)
        && RopeTheta.Equals(other.RopeTheta)
        && Equals(RopeScaling, other.RopeScaling)
        && VocabSize == other.VocabSize
        && TieWordEmbeddings == other.TieWordEmbeddings
        && MaxPositionEmbeddings == other.MaxPositionEmbeddings
        && DType == other.DType
        && AttentionBias == other.AttentionBias
        && OutputProjectionBias == other.OutputProjectionBias
        && EosTokenIds.SequenceEqual(other.EosTokenIds)
        && ModelType == other.ModelType
        && Router == other.Router
        && SharedExpertIntermediateSize == other.SharedExpertIntermediateSize
        && SharedExpertGate == other.SharedExpertGate
        && FirstKDenseReplace == other.FirstKDenseReplace
        && QkNorm == other.QkNorm
        && ClipQkv == other.ClipQkv
        && SlidingWindow == other.SlidingWindow
        && SlidingLayers.SequenceEqual(other.SlidingLayers)
        && Mla == other.Mla
        && AttentionSinks == other.AttentionSinks
        && SwigluLimit == other.SwigluLimit
        && SwigluAlpha.Equals(other.SwigluAlpha)
        && ExpertBiases == other.ExpertBiases;

    /// <inheritdoc />
    public override int GetHashCode() =>
        HashCode.Combine(
            HashCode.Combine(Architecture, HiddenSize, NumHiddenLayers, NumAttentionHeads, NumKeyValueHeads, HeadDim),
            HashCode.Combine(IntermediateSize, MoeIntermediateSize, NumExperts, NumExpertsPerTok, NormTopkProb, DecoderSparseStep),
            HashCode.Combine(RmsNormEps, RopeTheta, RopeScaling, VocabSize, TieWordEmbeddings, MaxPositionEmbeddings, DType, AttentionBias),
            MlpOnlyLayers.Count,
            EosTokenIds.Count,
            HashCode.Combine(ModelType, Router, SharedExpertIntermediateSize, QkNorm, SlidingWindow, FirstKDenseReplace));
}
