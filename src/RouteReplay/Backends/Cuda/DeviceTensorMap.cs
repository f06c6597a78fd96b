using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Backends.Cuda;

/// <summary>A checkpoint tensor and where its elements go on the device: a range of one device tensor.</summary>
internal sealed record DeviceTensor(string Name, long[] Shape, DeviceTensorKind Kind, int Layer, long ElementOffset)
{
    public long Elements => TensorShapes.ElementCount(Shape);
}

/// <summary>
/// Maps transformers' Qwen3-MoE tensor names to the device layout: per layer q, k, v, o and the norms; a MoE layer's
/// router and its experts packed as <c>gate_up [E, 2I, H]</c> (each expert's gate rows, then its up rows) and
/// <c>down [E, H, I]</c>, read from per-expert tensors or from transformers 5's fused ones.
/// </summary>
internal static class DeviceTensorMap
{
    /// <param name="hasTensor">Tells whether the source holds a name (fused experts are used when present).</param>
    public static IEnumerable<DeviceTensor> Tensors(ModelConfig c, Func<string, bool> hasTensor)
    {
        long h = c.HiddenSize, hd = c.HeadDim, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim;
        long e = c.NumExperts, i = c.MoeIntermediateSize, dense = c.IntermediateSize;
        yield return new("model.embed_tokens.weight", [c.VocabSize, h], DeviceTensorKind.Embed, 0, 0);
        yield return new("model.norm.weight", [h], DeviceTensorKind.FinalNorm, 0, 0);
        if (!c.TieWordEmbeddings)
        {
            yield return new("lm_head.weight", [c.VocabSize, h], DeviceTensorKind.LmHead, 0, 0);
        }
        for (var layer = 0; layer < c.NumHiddenLayers; layer++)
        {
            var prefix = $"model.layers.{layer}";
            yield return new($"{prefix}.input_layernorm.weight", [h], DeviceTensorKind.InputNorm, layer, 0);
            yield return new($"{prefix}.post_attention_layernorm.weight", [h], DeviceTensorKind.PostNorm, layer, 0);
            yield return new($"{prefix}.self_attn.q_proj.weight", [q, h], DeviceTensorKind.Q, layer, 0);
            yield return new($"{prefix}.self_attn.k_proj.weight", [kv, h], DeviceTensorKind.K, layer, 0);
            yield return new($"{prefix}.self_attn.v_proj.weight", [kv, h], DeviceTensorKind.V, layer, 0);
            yield return new($"{prefix}.self_attn.o_proj.weight", [h, q], DeviceTensorKind.O, layer, 0);
            yield return new($"{prefix}.self_attn.q_norm.weight", [hd], DeviceTensorKind.QNorm, layer, 0);
            yield return new($"{prefix}.self_attn.k_norm.weight", [hd], DeviceTensorKind.KNorm, layer, 0);
            if (!c.IsMoeLayer(layer))
            {
                yield return new($"{prefix}.mlp.gate_proj.weight", [dense, h], DeviceTensorKind.MlpGate, layer, 0);
                yield return new($"{prefix}.mlp.up_proj.weight", [dense, h], DeviceTensorKind.MlpUp, layer, 0);
                yield return new($"{prefix}.mlp.down_proj.weight", [h, dense], DeviceTensorKind.MlpDown, layer, 0);
                continue;
            }
            yield return new($"{prefix}.mlp.gate.weight", [e, h], DeviceTensorKind.Router, layer, 0);
            if (hasTensor($"{prefix}.mlp.experts.gate_up_proj"))
            {
                yield return new($"{prefix}.mlp.experts.gate_up_proj", [e, 2 * i, h], DeviceTensorKind.GateUp, layer, 0);
                yield return new($"{prefix}.mlp.experts.down_proj", [e, h, i], DeviceTensorKind.Down, layer, 0);
                continue;
            }
            for (var x = 0; x < e; x++)
            {
                var expert = $"{prefix}.mlp.experts.{x}";
                yield return new($"{expert}.gate_proj.weight", [i, h], DeviceTensorKind.GateUp, layer, x * 2 * i * h);
                yield return new($"{expert}.up_proj.weight", [i, h], DeviceTensorKind.GateUp, layer, ((x * 2) + 1) * i * h);
                yield return new($"{expert}.down_proj.weight", [h, i], DeviceTensorKind.Down, layer, x * h * i);
            }
        }
    }
}
