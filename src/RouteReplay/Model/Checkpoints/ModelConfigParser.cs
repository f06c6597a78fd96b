namespace RouteReplay.Model.Checkpoints;

/// <summary>Builds a validated <see cref="ModelConfig"/> from <c>config.json</c> text (transformers 4.x or 5.x spelling).</summary>
internal static class ModelConfigParser
{
    public const string Qwen3MoeArchitecture = "Qwen3MoeForCausalLM";

    private static readonly string[] SupportedDTypes = ["bfloat16", "float16", "float32"];

    public static ModelConfig Parse(string json, string fileName)
    {
        using var document = JsonConfigDocument.Parse(json, fileName);
        var fields = new JsonObjectReader(document.RootElement, fileName);
        var modelType = ParseModelType(fields);
        RejectUnsupportedFeatures(fields, modelType);
        var (ropeTheta, ropeScaling) = RopeConfigParser.Parse(fields);
        var common = new ModelConfig
        {
            Architecture = ModelFamilies.ArchitectureOf(modelType),
            ModelType = modelType,
            HiddenSize = fields.RequiredPositiveInt("hidden_size"),
            NumHiddenLayers = fields.RequiredPositiveInt("num_hidden_layers"),
            NumAttentionHeads = fields.RequiredPositiveInt("num_attention_heads"),
            NumKeyValueHeads = modelType == ModelFamilies.DeepseekV3
                ? fields.RequiredPositiveInt("num_attention_heads")
                : fields.OptionalPositiveInt("num_key_value_heads")
                    ?? (modelType == ModelFamilies.Qwen3Moe ? throw fields.Error("num_key_value_heads", "is required but missing") : fields.RequiredPositiveInt("num_attention_heads")),
            HeadDim = modelType == ModelFamilies.DeepseekV3 ? fields.RequiredPositiveInt("qk_rope_head_dim") : ParseHeadDim(fields),
            IntermediateSize = fields.RequiredPositiveInt("intermediate_size"),
            MoeIntermediateSize = 0,
            NumExperts = modelType == ModelFamilies.DeepseekV3 ? fields.RequiredPositiveInt("n_routed_experts") : ParseNumExperts(fields),
            NumExpertsPerTok = fields.OptionalPositiveInt("num_experts_per_tok")
                ?? fields.OptionalPositiveInt("experts_per_token")
                ?? throw fields.Error("num_experts_per_tok", "is required but missing"),
            NormTopkProb = fields.OptionalBool("norm_topk_prob") ?? false,
            RmsNormEps = ParseRmsNormEps(fields),
            RopeTheta = ropeTheta,
            RopeScaling = ropeScaling,
            VocabSize = fields.RequiredPositiveInt("vocab_size"),
            TieWordEmbeddings = fields.OptionalBool("tie_word_embeddings") ?? false,
            MaxPositionEmbeddings = fields.RequiredPositiveInt("max_position_embeddings"),
            DType = ParseDType(fields),
            EosTokenIds = fields.IntOrIntList("eos_token_id"),
        };
        var config = modelType switch
        {
            ModelFamilies.Olmoe => common with
            {
                MoeIntermediateSize = common.IntermediateSize,
                AttentionBias = fields.OptionalBool("attention_bias") ?? false,
                OutputProjectionBias = fields.OptionalBool("attention_bias") ?? false,
                QkNorm = QkNormKind.WholeProjection,
                ClipQkv = ParseClipQkv(fields),
            },
            ModelFamilies.Qwen2Moe => common with
            {
                MoeIntermediateSize = fields.RequiredPositiveInt("moe_intermediate_size"),
                DecoderSparseStep = fields.OptionalPositiveInt("decoder_sparse_step") ?? 1,
                MlpOnlyLayers = fields.OptionalIntList("mlp_only_layers") ?? [],
                SharedExpertIntermediateSize = fields.OptionalInt("shared_expert_intermediate_size") is { } shared and >= 0
                    ? shared
                    : throw fields.Error("shared_expert_intermediate_size", "is required and must not be negative"),
                SharedExpertGate = true,
                AttentionBias = true,
                QkNorm = QkNormKind.None,
            },
            ModelFamilies.Mixtral => common with
            {
                MoeIntermediateSize = common.IntermediateSize,
                Router = new RouterSpec(RouterScoring.SoftmaxOverSelected),
                QkNorm = QkNormKind.None,
                SlidingWindow = fields.OptionalPositiveInt("sliding_window") ?? 0,
            },
            ModelFamilies.DeepseekV3 => ParseDeepseekV3(fields, common),
            ModelFamilies.GptOss => ParseGptOss(fields, common),
            _ => common with
            {
                MoeIntermediateSize = fields.RequiredPositiveInt("moe_intermediate_size"),
                DecoderSparseStep = fields.OptionalPositiveInt("decoder_sparse_step") ?? 1,
                MlpOnlyLayers = fields.OptionalIntList("mlp_only_layers") ?? [],
                AttentionBias = fields.OptionalBool("attention_bias") ?? false,
                OutputProjectionBias = fields.OptionalBool("attention_bias") ?? false,
            },
        };
        ValidateConsistency(config, fields);
        return config;
    }

    /// <summary>
    /// gpt-oss: router bias, top-k on the logits then a softmax over the k; clamped SwiGLU experts with biases;
    /// attention with biases and per-head sinks, sliding-window layers as <c>layer_types</c> says (alternating by default).
    /// </summary>
    private static ModelConfig ParseGptOss(JsonObjectReader fields, ModelConfig common)
    {
        var layerTypes = fields.OptionalStringList("layer_types")
            ?? Enumerable.Range(0, common.NumHiddenLayers).Select(i => i % 2 == 0 ? "sliding_attention" : "full_attention").ToArray();
        if (layerTypes.Count != common.NumHiddenLayers || layerTypes.Any(t => t is not ("sliding_attention" or "full_attention")))
        {
            throw fields.Error(
                "layer_types",
                $"must list sliding_attention or full_attention for each of the {common.NumHiddenLayers} layers");
        }
        var bias = fields.OptionalBool("attention_bias") ?? true;
        return common with
        {
            MoeIntermediateSize = common.IntermediateSize,
            Router = new RouterSpec(RouterScoring.SoftmaxOverSelected, LogitBias: true),
            QkNorm = QkNormKind.None,
            AttentionBias = bias,
            OutputProjectionBias = bias,
            AttentionSinks = true,
            SlidingWindow = fields.OptionalPositiveInt("sliding_window") ?? 0,
            SlidingLayers = Enumerable.Range(0, common.NumHiddenLayers).Where(i => layerTypes[i] == "sliding_attention").ToArray(),
            SwigluLimit = fields.OptionalDouble("swiglu_limit") ?? 7.0,
            SwigluAlpha = fields.OptionalDouble("swiglu_alpha") ?? 1.702,
            ExpertBiases = true,
        };
    }

    /// <summary>
    /// DeepSeek-V3 (and Moonlight, Kimi-K2): sigmoid router with a selection bias, group-limited top-k and scaled
    /// weights; shared experts; the first layers dense; multi-head latent attention.
    /// </summary>
    private static ModelConfig ParseDeepseekV3(JsonObjectReader fields, ModelConfig common)
    {
        if (fields.OptionalString("topk_method") is { } method && method != "noaux_tc")
        {
            throw fields.Error("topk_method", $"is '{method}'; RouteReplay runs DeepSeek-V3 routers (noaux_tc) only");
        }
        if (fields.OptionalInt("moe_layer_freq") is { } frequency and not 1)
        {
            throw fields.Error("moe_layer_freq", $"is {frequency}; only 1 (every layer past first_k_dense_replace is MoE) is supported");
        }
        var moeIntermediate = fields.RequiredPositiveInt("moe_intermediate_size");
        var groups = fields.OptionalPositiveInt("n_group") ?? 1;
        var qkNope = fields.RequiredPositiveInt("qk_nope_head_dim");
        var qkRope = fields.RequiredPositiveInt("qk_rope_head_dim");
        var softmaxScale = common.RopeScaling is { MscaleAllDim: { } all } scaling && all != 0
            ? Math.Pow(RopeScaling.YarnMscale(scaling.Factor, all), 2)
            : 1.0;
        return common with
        {
            MoeIntermediateSize = moeIntermediate,
            FirstKDenseReplace = fields.OptionalInt("first_k_dense_replace") is { } dense and >= 0
                ? dense
                : fields.Has("first_k_dense_replace") ? throw fields.Error("first_k_dense_replace", "must not be negative") : 0,
            SharedExpertIntermediateSize = moeIntermediate * (fields.OptionalInt("n_shared_experts") is { } shared and >= 0 ? shared : 0),
            NormTopkProb = fields.OptionalBool("norm_topk_prob") ?? true,
            Router = new RouterSpec(
                RouterScoring.Sigmoid,
                CorrectionBias: true,
                ExpertGroups: groups,
                TopKGroups: fields.OptionalPositiveInt("topk_group") ?? 1,
                ScalingFactor: fields.OptionalDouble("routed_scaling_factor") ?? 1.0),
            QkNorm = QkNormKind.None,
            AttentionBias = fields.OptionalBool("attention_bias") ?? false,
            OutputProjectionBias = fields.OptionalBool("attention_bias") ?? false,
            Mla = new MlaSpec(
                QLoraRank: fields.OptionalPositiveInt("q_lora_rank") ?? 0,
                KvLoraRank: fields.RequiredPositiveInt("kv_lora_rank"),
                QkNopeHeadDim: qkNope,
                QkRopeHeadDim: qkRope,
                VHeadDim: fields.RequiredPositiveInt("v_head_dim"),
                RopeInterleave: fields.OptionalBool("rope_interleave") ?? true,
                SoftmaxScaleFactor: softmaxScale),
        };
    }

    /// <summary>
    /// The family, from <c>architectures</c> when present (a checkpoint names what it was saved as), else from
    /// <c>model_type</c>; both must name a supported family.
    /// </summary>
    private static string ParseModelType(JsonObjectReader fields)
    {
        var supported = string.Join(", ", ModelFamilies.ModelTypes.Select(ModelFamilies.ArchitectureOf));
        var architectures = fields.OptionalStringList("architectures");
        if (architectures is not null)
        {
            return architectures.Select(ModelFamilies.ModelTypeOf).FirstOrDefault(type => type is not null)
                ?? throw fields.Error(
                    "architectures",
                    $"is [{string.Join(", ", architectures)}], which RouteReplay does not run; supported: {supported}");
        }
        var modelType = fields.OptionalString("model_type");
        return modelType is not null && ModelFamilies.ModelTypes.Contains(modelType)
            ? modelType
            : throw fields.Error(
                "model_type",
                $"is '{modelType}' and architectures is missing; supported model types: {string.Join(", ", ModelFamilies.ModelTypes)}");
    }

    /// <summary>Fields that would change the forward in ways the engine does not implement: refused before any weight is read.</summary>
    private static void RejectUnsupportedFeatures(JsonObjectReader fields, string modelType)
    {
        if (fields.OptionalString("hidden_act") is { } activation && activation != "silu")
        {
            throw fields.Error("hidden_act", $"is '{activation}'; RouteReplay runs SwiGLU (silu) models only");
        }
        if (fields.OptionalObject("quantization_config") is { } quantization)
        {
            var method = quantization.OptionalString("quant_method") ?? "(unnamed)";
            if (!(modelType == ModelFamilies.GptOss && method == "mxfp4"))
            {
                throw quantization.Error(
                    "quant_method",
                    $"is '{method}'; RouteReplay loads bfloat16, float16 or float32 weights (and gpt-oss's mxfp4 experts) only");
            }
        }
        var expectedScoring = modelType == ModelFamilies.DeepseekV3 ? "sigmoid" : "softmax";
        if (fields.OptionalString("scoring_func") is { } scoring && scoring != expectedScoring)
        {
            throw fields.Error("scoring_func", $"is '{scoring}', but {modelType} routers score with {expectedScoring}");
        }
        if (modelType == ModelFamilies.Qwen2Moe && fields.OptionalBool("use_sliding_window") == true)
        {
            throw fields.Error("use_sliding_window", "is true; sliding-window Qwen2-MoE attention is not supported");
        }
    }

    private static double? ParseClipQkv(JsonObjectReader fields) =>
        fields.OptionalDouble("clip_qkv") is { } clip
            ? clip > 0 ? clip : throw fields.Error("clip_qkv", $"must be positive, but is {clip}")
            : null;

    private static int ParseHeadDim(JsonObjectReader fields)
    {
        if (fields.OptionalPositiveInt("head_dim") is { } headDim)
        {
            return headDim;
        }
        var hidden = fields.RequiredPositiveInt("hidden_size");
        var heads = fields.RequiredPositiveInt("num_attention_heads");
        return hidden % heads == 0
            ? hidden / heads
            : throw fields.Error("head_dim", $"is missing and hidden_size {hidden} is not divisible by num_attention_heads {heads}");
    }

    private static int ParseNumExperts(JsonObjectReader fields)
    {
        var key = fields.Has("num_experts") ? "num_experts" : "num_local_experts";
        var experts = fields.OptionalInt(key) ?? throw fields.Error("num_experts", "is required but missing (also as num_local_experts)");
        return experts >= 0 ? experts : throw fields.Error(key, $"must not be negative, but is {experts}");
    }

    private static double ParseRmsNormEps(JsonObjectReader fields)
    {
        var eps = fields.OptionalDouble("rms_norm_eps") ?? 1e-6;
        return eps > 0 ? eps : throw fields.Error("rms_norm_eps", $"must be positive, but is {eps}");
    }

    private static string ParseDType(JsonObjectReader fields)
    {
        var key = fields.Has("dtype") ? "dtype" : "torch_dtype";
        var dtype = fields.OptionalString(key) ?? throw fields.Error("torch_dtype", "is required but missing (also as dtype)");
        return SupportedDTypes.Contains(dtype)
            ? dtype
            : throw fields.Error(key, $"must be one of {string.Join(", ", SupportedDTypes)}, but is '{dtype}'");
    }

    private static void ValidateConsistency(ModelConfig config, JsonObjectReader fields)
    {
        if (config.NumAttentionHeads % config.NumKeyValueHeads != 0)
        {
            throw fields.Error(
                "num_key_value_heads",
                $"({config.NumKeyValueHeads}) must divide num_attention_heads ({config.NumAttentionHeads})");
        }
        if (config.NumExpertsPerTok > config.NumExperts && config.NumExperts > 0)
        {
            throw fields.Error(
                "num_experts_per_tok",
                $"({config.NumExpertsPerTok}) must not exceed the number of experts ({config.NumExperts})");
        }
        if (config.NumExperts % config.Router.ExpertGroups != 0 || config.Router.TopKGroups > config.Router.ExpertGroups)
        {
            throw fields.Error(
                "topk_group",
                $"({config.Router.TopKGroups}) must not exceed n_group ({config.Router.ExpertGroups}), which must divide the {config.NumExperts} experts");
        }
        if (config.NumExperts > 0 && config.NumExpertsPerTok > config.NumExperts / config.Router.ExpertGroups * config.Router.TopKGroups)
        {
            throw fields.Error(
                "num_experts_per_tok",
                $"({config.NumExpertsPerTok}) exceeds the experts of the {config.Router.TopKGroups} groups a token may use");
        }
        foreach (var layer in config.MlpOnlyLayers)
        {
            if (layer < 0 || layer >= config.NumHiddenLayers)
            {
                throw fields.Error(
                    "mlp_only_layers",
                    $"holds layer {layer}, outside 0..{config.NumHiddenLayers - 1} (num_hidden_layers is {config.NumHiddenLayers})");
            }
        }
    }
}
