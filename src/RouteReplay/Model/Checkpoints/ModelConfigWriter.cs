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
        var deepseek = config.Mla is not null;
        var gptOss = config.ModelType == ModelFamilies.GptOss;
        writer.WriteStartObject();
        writer.WriteStartArray("architectures");
        writer.WriteStringValue(config.Architecture);
        writer.WriteEndArray();
        if (qwen3 || olmoe || deepseek || gptOss)
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
        if (deepseek)
        {
            writer.WriteNumber("first_k_dense_replace", config.FirstKDenseReplace);
        }
        writer.WriteNumber("head_dim", config.HeadDim);
        writer.WriteString("hidden_act", "silu");
        writer.WriteNumber("hidden_size", config.HiddenSize);
        writer.WriteNumber("initializer_range", 0.02);
        writer.WriteNumber("intermediate_size", config.IntermediateSize);
        if (config.Mla is { } mla)
        {
            writer.WriteNumber("kv_lora_rank", mla.KvLoraRank);
        }
        if (gptOss)
        {
            writer.WriteStartArray("layer_types");
            for (var layer = 0; layer < config.NumHiddenLayers; layer++)
            {
                writer.WriteStringValue(config.WindowOf(layer) > 0 ? "sliding_attention" : "full_attention");
            }
            writer.WriteEndArray();
        }
        writer.WriteNumber("max_position_embeddings", config.MaxPositionEmbeddings);
        if (qwen3 || qwen2)
        {
            writer.WriteNumber("max_window_layers", config.NumHiddenLayers);
            IndentedJsonFile.WriteIntList(writer, "mlp_only_layers", config.MlpOnlyLayers);
        }
        writer.WriteString("model_type", config.ModelType);
        if (qwen3 || qwen2 || deepseek)
        {
            writer.WriteNumber("moe_intermediate_size", config.MoeIntermediateSize);
        }
        if (deepseek)
        {
            writer.WriteNumber("n_group", config.Router.ExpertGroups);
            writer.WriteNumber("n_routed_experts", config.NumExperts);
            writer.WriteNumber("n_shared_experts", config.SharedExpertIntermediateSize / config.MoeIntermediateSize);
        }
        if (!mixtral && !gptOss)
        {
            writer.WriteBoolean("norm_topk_prob", config.NormTopkProb);
        }
        writer.WriteNumber("num_attention_heads", config.NumAttentionHeads);
        if (!mixtral && !deepseek && !gptOss)
        {
            writer.WriteNumber("num_experts", config.NumExperts);
        }
        writer.WriteNumber("num_experts_per_tok", config.NumExpertsPerTok);
        writer.WriteNumber("num_hidden_layers", config.NumHiddenLayers);
        writer.WriteNumber("num_key_value_heads", config.NumKeyValueHeads);
        if (mixtral || gptOss)
        {
            writer.WriteNumber("num_local_experts", config.NumExperts);
        }
        writer.WriteBoolean("output_router_logits", false);
        if (config.Mla is { } attention)
        {
            if (attention.QLoraRank > 0)
            {
                writer.WriteNumber("q_lora_rank", attention.QLoraRank);
            }
            else
            {
                writer.WriteNull("q_lora_rank");
            }
            writer.WriteNumber("qk_nope_head_dim", attention.QkNopeHeadDim);
            writer.WriteNumber("qk_rope_head_dim", attention.QkRopeHeadDim);
        }
        writer.WriteNumber("rms_norm_eps", config.RmsNormEps);
        if (config.Mla is { } rope)
        {
            writer.WriteBoolean("rope_interleave", rope.RopeInterleave);
        }
        WriteRopeScaling(writer, config.RopeScaling);
        writer.WriteNumber("rope_theta", config.RopeTheta);
        if (deepseek)
        {
            writer.WriteNumber("routed_scaling_factor", config.Router.ScalingFactor);
        }
        writer.WriteNumber("router_aux_loss_coef", 0.001);
        if (deepseek)
        {
            writer.WriteString("scoring_func", "sigmoid");
        }
        if (gptOss)
        {
            writer.WriteNumber("swiglu_alpha", config.SwigluAlpha);
            writer.WriteNumber("swiglu_limit", config.SwigluLimit ?? 7.0);
        }
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
        if (deepseek)
        {
            writer.WriteNumber("topk_group", config.Router.TopKGroups);
            writer.WriteString("topk_method", "noaux_tc");
        }
        writer.WriteString("torch_dtype", config.DType);
        writer.WriteBoolean("use_cache", true);
        if (qwen3 || qwen2)
        {
            writer.WriteBoolean("use_sliding_window", false);
        }
        if (config.Mla is { } values)
        {
            writer.WriteNumber("v_head_dim", values.VHeadDim);
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
        WriteOptional(writer, "mscale", scaling.Mscale);
        WriteOptional(writer, "mscale_all_dim", scaling.MscaleAllDim);
        if (!scaling.Truncate)
        {
            writer.WriteBoolean("truncate", false);
        }
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
