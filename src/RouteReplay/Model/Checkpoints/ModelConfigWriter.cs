using System.Text.Json;

namespace RouteReplay.Model.Checkpoints;

/// <summary>
/// Writes a <see cref="ModelConfig"/> as a transformers 4.x-style <c>config.json</c> (keys sorted, as transformers
/// writes them), including the fields transformers needs to load the model that the engine itself ignores.
/// </summary>
internal static class ModelConfigWriter
{
    public static void Write(ModelConfig config, string path) => IndentedJsonFile.Write(path, writer => WriteFields(config, writer));

    private static void WriteFields(ModelConfig config, Utf8JsonWriter writer)
    {
        var qwen3 = config.ModelType == ModelFamilies.Qwen3Moe;
        var qwen2 = config.ModelType == ModelFamilies.Qwen2Moe;
        var olmoe = config.ModelType == ModelFamilies.Olmoe;
        var mixtral = config.ModelType == ModelFamilies.Mixtral;
        writer.WriteStartObject();
        writer.WriteStartArray("architectures");
        writer.WriteStringValue(config.Architecture);
        writer.WriteEndArray();
        if (qwen3 || olmoe)
        {
            writer.WriteBoolean("attention_bias", config.AttentionBias);
        }
        writer.WriteNumber("attention_dropout", 0.0);
        writer.WriteNull("bos_token_id");
        if (olmoe)
        {
            WriteOptional(writer, "clip_qkv", config.ClipQkv, writeNull: true);
        }
        if (qwen3 || qwen2)
        {
            writer.WriteNumber("decoder_sparse_step", config.DecoderSparseStep);
        }
        IndentedJsonFile.WriteIntOrIntList(writer, "eos_token_id", config.EosTokenIds);
        writer.WriteNumber("head_dim", config.HeadDim);
        writer.WriteString("hidden_act", "silu");
        writer.WriteNumber("hidden_size", config.HiddenSize);
        writer.WriteNumber("initializer_range", 0.02);
        writer.WriteNumber("intermediate_size", config.IntermediateSize);
        writer.WriteNumber("max_position_embeddings", config.MaxPositionEmbeddings);
        if (qwen3 || qwen2)
        {
            writer.WriteNumber("max_window_layers", config.NumHiddenLayers);
            IndentedJsonFile.WriteIntList(writer, "mlp_only_layers", config.MlpOnlyLayers);
        }
        writer.WriteString("model_type", config.ModelType);
        if (qwen3 || qwen2)
        {
            writer.WriteNumber("moe_intermediate_size", config.MoeIntermediateSize);
        }
        if (!mixtral)
        {
            writer.WriteBoolean("norm_topk_prob", config.NormTopkProb);
        }
        writer.WriteNumber("num_attention_heads", config.NumAttentionHeads);
        if (!mixtral)
        {
            writer.WriteNumber("num_experts", config.NumExperts);
        }
        writer.WriteNumber("num_experts_per_tok", config.NumExpertsPerTok);
        writer.WriteNumber("num_hidden_layers", config.NumHiddenLayers);
        writer.WriteNumber("num_key_value_heads", config.NumKeyValueHeads);
        if (mixtral)
        {
            writer.WriteNumber("num_local_experts", config.NumExperts);
        }
        writer.WriteBoolean("output_router_logits", false);
        writer.WriteNumber("rms_norm_eps", config.RmsNormEps);
        WriteRopeScaling(writer, config.RopeScaling);
        writer.WriteNumber("rope_theta", config.RopeTheta);
        writer.WriteNumber("router_aux_loss_coef", 0.001);
        if (qwen2)
        {
            writer.WriteNumber("shared_expert_intermediate_size", config.SharedExpertIntermediateSize);
        }
        if (config.SlidingWindow > 0)
        {
            writer.WriteNumber("sliding_window", config.SlidingWindow);
        }
        else
        {
            writer.WriteNull("sliding_window");
        }
        writer.WriteBoolean("tie_word_embeddings", config.TieWordEmbeddings);
        writer.WriteString("torch_dtype", config.DType);
        writer.WriteBoolean("use_cache", true);
        if (qwen3 || qwen2)
        {
            writer.WriteBoolean("use_sliding_window", false);
        }
        writer.WriteNumber("vocab_size", config.VocabSize);
        writer.WriteEndObject();
    }

    private static void WriteRopeScaling(Utf8JsonWriter writer, RopeScaling? scaling)
    {
        if (scaling is null)
        {
            writer.WriteNull("rope_scaling");
            return;
        }
        writer.WriteStartObject("rope_scaling");
        WriteOptional(writer, "attention_factor", scaling.AttentionFactor);
        WriteOptional(writer, "beta_fast", scaling.BetaFast);
        WriteOptional(writer, "beta_slow", scaling.BetaSlow);
        writer.WriteNumber("factor", scaling.Factor);
        if (scaling.OriginalMaxPositionEmbeddings is { } original)
        {
            writer.WriteNumber("original_max_position_embeddings", original);
        }
        writer.WriteString("rope_type", scaling.Type);
        writer.WriteEndObject();
    }

    private static void WriteOptional(Utf8JsonWriter writer, string key, double? value, bool writeNull = false)
    {
        if (value is { } present)
        {
            writer.WriteNumber(key, present);
        }
        else if (writeNull)
        {
            writer.WriteNull(key);
        }
    }
}
