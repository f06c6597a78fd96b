namespace RouteReplay.Model.Checkpoints;

/// <summary>
/// The weight tensors of a model of one of the <see cref="ModelFamilies"/>, with the names and shapes its Hugging Face
/// checkpoints use (Mixtral's original <c>block_sparse_moe</c> / <c>w1 w2 w3</c> names included).
/// </summary>
internal static class WeightLayout
{
    public static IEnumerable<WeightSpec> Enumerate(ModelConfig config)
    {
        long hidden = config.HiddenSize;
        var residualGain = 1.0 / Math.Sqrt(2.0 * config.NumHiddenLayers);
        yield return new("model.embed_tokens.weight", [config.VocabSize, hidden], WeightRole.Embedding);
        for (var layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            var prefix = $"model.layers.{layer}";
            yield return new($"{prefix}.input_layernorm.weight", [hidden], WeightRole.Norm);
            yield return new($"{prefix}.post_attention_layernorm.weight", [hidden], WeightRole.Norm);
            var attention = config.Mla is { } mla
                ? LatentAttention(config, mla, $"{prefix}.self_attn", residualGain)
                : Attention(config, $"{prefix}.self_attn", residualGain);
            foreach (var weight in attention)
            {
                yield return weight;
            }
            var mlp = config.IsMoeLayer(layer)
                ? SparseMlp(config, MoePrefix(config, layer), residualGain)
                : GatedMlp(config, $"{prefix}.mlp", config.IntermediateSize, residualGain);
            foreach (var weight in mlp)
            {
                yield return weight;
            }
        }
        yield return new("model.norm.weight", [hidden], WeightRole.Norm);
        if (!config.TieWordEmbeddings)
        {
            yield return new("lm_head.weight", [config.VocabSize, hidden], WeightRole.Linear);
        }
    }

    /// <summary>The prefix of an MoE layer's router and experts in the family's own checkpoints.</summary>
    public static string MoePrefix(ModelConfig config, int layer) =>
        config.ModelType == ModelFamilies.Mixtral ? $"model.layers.{layer}.block_sparse_moe" : $"model.layers.{layer}.mlp";

    /// <summary>The router's name under the MoE prefix: <c>router</c> in gpt-oss, <c>gate</c> elsewhere.</summary>
    public static string RouterName(ModelConfig config) => config.ModelType == ModelFamilies.GptOss ? "router" : "gate";

    /// <summary>The names of an expert's gate, up and down projections.</summary>
    public static (string Gate, string Up, string Down) ExpertProjections(ModelConfig config) =>
        config.ModelType == ModelFamilies.Mixtral ? ("w1", "w3", "w2") : ("gate_proj", "up_proj", "down_proj");

    /// <summary>The shapes of the q and k norm weights; null when the family has none.</summary>
    public static (long Query, long Key)? QkNormWidths(ModelConfig config) => config.QkNorm switch
    {
        QkNormKind.PerHead => (config.HeadDim, config.HeadDim),
        QkNormKind.WholeProjection => ((long)config.NumAttentionHeads * config.HeadDim, (long)config.NumKeyValueHeads * config.HeadDim),
        _ => null,
    };

    private static IEnumerable<WeightSpec> Attention(ModelConfig config, string prefix, double residualGain)
    {
        long hidden = config.HiddenSize;
        long queryWidth = (long)config.NumAttentionHeads * config.HeadDim;
        long keyValueWidth = (long)config.NumKeyValueHeads * config.HeadDim;
        (string Name, long Out, long In, bool Bias)[] projections =
        [
            ("q_proj", queryWidth, hidden, config.AttentionBias),
            ("k_proj", keyValueWidth, hidden, config.AttentionBias),
            ("v_proj", keyValueWidth, hidden, config.AttentionBias),
            ("o_proj", hidden, queryWidth, config.OutputProjectionBias),
        ];
        foreach (var (name, outputs, inputs, bias) in projections)
        {
            yield return new($"{prefix}.{name}.weight", [outputs, inputs], WeightRole.Linear, name == "o_proj" ? residualGain : 1.0);
            if (bias)
            {
                yield return new($"{prefix}.{name}.bias", [outputs], WeightRole.Bias);
            }
        }
        if (QkNormWidths(config) is var (query, key))
        {
            yield return new($"{prefix}.q_norm.weight", [query], WeightRole.Norm);
            yield return new($"{prefix}.k_norm.weight", [key], WeightRole.Norm);
        }
        if (config.AttentionSinks)
        {
            yield return new($"{prefix}.sinks", [config.NumAttentionHeads], WeightRole.Bias);
        }
    }

    /// <summary>
    /// Multi-head latent attention: the query (directly, or through its compression <c>q_a_proj</c>,
    /// <c>q_a_layernorm</c>, <c>q_b_proj</c>), the KV compression <c>kv_a_proj_with_mqa</c> (latent plus RoPE key),
    /// <c>kv_a_layernorm</c>, the per-head expansion <c>kv_b_proj</c> and the output projection.
    /// </summary>
    private static IEnumerable<WeightSpec> LatentAttention(ModelConfig config, MlaSpec mla, string prefix, double residualGain)
    {
        long hidden = config.HiddenSize, heads = config.NumAttentionHeads;
        if (mla.QLoraRank > 0)
        {
            yield return new($"{prefix}.q_a_proj.weight", [mla.QLoraRank, hidden], WeightRole.Linear);
            if (config.AttentionBias)
            {
                yield return new($"{prefix}.q_a_proj.bias", [mla.QLoraRank], WeightRole.Bias);
            }
            yield return new($"{prefix}.q_a_layernorm.weight", [mla.QLoraRank], WeightRole.Norm);
            yield return new($"{prefix}.q_b_proj.weight", [heads * mla.QkHeadDim, mla.QLoraRank], WeightRole.Linear);
        }
        else
        {
            yield return new($"{prefix}.q_proj.weight", [heads * mla.QkHeadDim, hidden], WeightRole.Linear);
        }
        yield return new($"{prefix}.kv_a_proj_with_mqa.weight", [mla.KvLoraRank + mla.QkRopeHeadDim, hidden], WeightRole.Linear);
        if (config.AttentionBias)
        {
            yield return new($"{prefix}.kv_a_proj_with_mqa.bias", [mla.KvLoraRank + mla.QkRopeHeadDim], WeightRole.Bias);
        }
        yield return new($"{prefix}.kv_a_layernorm.weight", [mla.KvLoraRank], WeightRole.Norm);
        yield return new($"{prefix}.kv_b_proj.weight", [heads * (mla.QkNopeHeadDim + mla.VHeadDim), mla.KvLoraRank], WeightRole.Linear);
        yield return new($"{prefix}.o_proj.weight", [hidden, heads * mla.VHeadDim], WeightRole.Linear, residualGain);
        if (config.OutputProjectionBias)
        {
            yield return new($"{prefix}.o_proj.bias", [hidden], WeightRole.Bias);
        }
    }

    /// <summary>
    /// gpt-oss's experts as its checkpoints store them unquantised: <c>gate_up_proj [E, H, 2I]</c> (input-major, gate
    /// and up columns interleaved) with a bias <c>[E, 2I]</c>, and <c>down_proj [E, I, H]</c> with a bias <c>[E, H]</c>.
    /// </summary>
    private static IEnumerable<WeightSpec> InterleavedExperts(ModelConfig config, string prefix, double residualGain)
    {
        long e = config.NumExperts, h = config.HiddenSize, i = config.MoeIntermediateSize;
        yield return new($"{prefix}.gate_up_proj", [e, h, 2 * i], WeightRole.Linear, Math.Sqrt(2 * i / (double)h));
        yield return new($"{prefix}.gate_up_proj_bias", [e, 2 * i], WeightRole.Bias);
        yield return new($"{prefix}.down_proj", [e, i, h], WeightRole.Linear, residualGain * Math.Sqrt(h / (double)i));
        yield return new($"{prefix}.down_proj_bias", [e, h], WeightRole.Bias);
    }

    /// <summary>The shared expert's prefix: Qwen2-MoE's one <c>shared_expert</c>, DeepSeek's <c>shared_experts</c> (fused).</summary>
    public static string SharedExpertPrefix(ModelConfig config, string moePrefix) =>
        config.Mla is not null ? $"{moePrefix}.shared_experts" : $"{moePrefix}.shared_expert";

    private static IEnumerable<WeightSpec> SparseMlp(ModelConfig config, string prefix, double residualGain)
    {
        var router = $"{prefix}.{RouterName(config)}";
        yield return new($"{router}.weight", [config.NumExperts, config.HiddenSize], WeightRole.Router);
        if (config.Router.LogitBias)
        {
            yield return new($"{router}.bias", [config.NumExperts], WeightRole.Bias);
        }
        if (config.ModelType == ModelFamilies.GptOss)
        {
            foreach (var weight in InterleavedExperts(config, $"{prefix}.experts", residualGain))
            {
                yield return weight;
            }
            yield break;
        }
        if (config.Router.CorrectionBias)
        {
            yield return new($"{prefix}.gate.e_score_correction_bias", [config.NumExperts], WeightRole.Bias);
        }
        for (var expert = 0; expert < config.NumExperts; expert++)
        {
            foreach (var weight in GatedMlp(config, $"{prefix}.experts.{expert}", config.MoeIntermediateSize, residualGain))
            {
                yield return weight;
            }
        }
        if (config.SharedExpertIntermediateSize > 0)
        {
            foreach (var weight in GatedMlp(config, SharedExpertPrefix(config, prefix), config.SharedExpertIntermediateSize, residualGain))
            {
                yield return weight;
            }
            if (config.SharedExpertGate)
            {
                yield return new($"{prefix}.shared_expert_gate.weight", [1, config.HiddenSize], WeightRole.Router);
            }
        }
    }

    private static IEnumerable<WeightSpec> GatedMlp(ModelConfig config, string prefix, long intermediate, double residualGain)
    {
        long hidden = config.HiddenSize;
        var (gate, up, down) = prefix.Contains(".experts.", StringComparison.Ordinal)
            ? ExpertProjections(config)
            : ("gate_proj", "up_proj", "down_proj");
        return
        [
            new($"{prefix}.{gate}.weight", [intermediate, hidden], WeightRole.Linear),
            new($"{prefix}.{up}.weight", [intermediate, hidden], WeightRole.Linear),
            new($"{prefix}.{down}.weight", [hidden, intermediate], WeightRole.Linear, residualGain),
        ];
    }
}
