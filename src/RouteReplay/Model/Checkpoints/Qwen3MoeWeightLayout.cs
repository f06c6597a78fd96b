namespace RouteReplay.Model.Checkpoints;

/// <summary>The weight tensors of a Qwen3-MoE model, with transformers' names and shapes.</summary>
internal static class Qwen3MoeWeightLayout
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
            foreach (var weight in Attention(config, $"{prefix}.self_attn", residualGain))
            {
                yield return weight;
            }
            var mlp = config.IsMoeLayer(layer) ? SparseMlp(config, $"{prefix}.mlp", residualGain) : DenseMlp(config, $"{prefix}.mlp", residualGain);
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

    private static IEnumerable<WeightSpec> Attention(ModelConfig config, string prefix, double residualGain)
    {
        long hidden = config.HiddenSize;
        long queryWidth = (long)config.NumAttentionHeads * config.HeadDim;
        long keyValueWidth = (long)config.NumKeyValueHeads * config.HeadDim;
        (string Name, long Out, long In)[] projections =
        [
            ("q_proj", queryWidth, hidden),
            ("k_proj", keyValueWidth, hidden),
            ("v_proj", keyValueWidth, hidden),
            ("o_proj", hidden, queryWidth),
        ];
        foreach (var (name, outputs, inputs) in projections)
        {
            yield return new($"{prefix}.{name}.weight", [outputs, inputs], WeightRole.Linear, name == "o_proj" ? residualGain : 1.0);
            if (config.AttentionBias)
            {
                yield return new($"{prefix}.{name}.bias", [outputs], WeightRole.Bias);
            }
        }
        yield return new($"{prefix}.q_norm.weight", [config.HeadDim], WeightRole.Norm);
        yield return new($"{prefix}.k_norm.weight", [config.HeadDim], WeightRole.Norm);
    }

    private static IEnumerable<WeightSpec> SparseMlp(ModelConfig config, string prefix, double residualGain)
    {
        yield return new($"{prefix}.gate.weight", [config.NumExperts, config.HiddenSize], WeightRole.Router);
        for (var expert = 0; expert < config.NumExperts; expert++)
        {
            foreach (var weight in GatedMlp($"{prefix}.experts.{expert}", config.HiddenSize, config.MoeIntermediateSize, residualGain))
            {
                yield return weight;
            }
        }
    }

    private static IEnumerable<WeightSpec> DenseMlp(ModelConfig config, string prefix, double residualGain) =>
        GatedMlp(prefix, config.HiddenSize, config.IntermediateSize, residualGain);

    private static IEnumerable<WeightSpec> GatedMlp(string prefix, long hidden, long intermediate, double residualGain) =>
    [
        new($"{prefix}.gate_proj.weight", [intermediate, hidden], WeightRole.Linear),
        new($"{prefix}.up_proj.weight", [intermediate, hidden], WeightRole.Linear),
        new($"{prefix}.down_proj.weight", [hidden, intermediate], WeightRole.Linear, residualGain),
    ];
}
