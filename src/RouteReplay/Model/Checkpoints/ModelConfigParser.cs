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
            NumKeyValueHeads = fields.OptionalPositiveInt("num_key_value_heads")
                ?? (modelType == ModelFamilies.Qwen3Moe ? throw fields.Error("num_key_value_heads", "is required but missing") : fields.RequiredPositiveInt("num_attention_heads")),
            HeadDim = ParseHeadDim(fields),
            IntermediateSize = fields.RequiredPositiveInt("intermediate_size"),
            MoeIntermediateSize = 0,
            NumExperts = ParseNumExperts(fields),
            NumExpertsPerTok = fields.RequiredPositiveInt("num_experts_per_tok"),
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
            throw quantization.Error("quant_method", $"is '{method}'; RouteReplay loads unquantised bfloat16, float16 or float32 weights only");
        }
        if (fields.OptionalString("scoring_func") is { } scoring && scoring != "softmax")
        {
            throw fields.Error("scoring_func", $"is '{scoring}', but {modelType} routers score with softmax");
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
