namespace RouteReplay.Model.Checkpoints;

/// <summary>Builds a validated <see cref="ModelConfig"/> from <c>config.json</c> text (transformers 4.x or 5.x spelling).</summary>
internal static class ModelConfigParser
{
    public const string Qwen3MoeArchitecture = "Qwen3MoeForCausalLM";
    public const string Qwen3MoeModelType = "qwen3_moe";

    private static readonly string[] SupportedDTypes = ["bfloat16", "float16", "float32"];

    public static ModelConfig Parse(string json, string fileName)
    {
        using var document = JsonConfigDocument.Parse(json, fileName);
        var fields = new JsonObjectReader(document.RootElement, fileName);
        var (ropeTheta, ropeScaling) = RopeConfigParser.Parse(fields);
        var config = new ModelConfig
        {
            Architecture = ParseArchitecture(fields),
            HiddenSize = fields.RequiredPositiveInt("hidden_size"),
            NumHiddenLayers = fields.RequiredPositiveInt("num_hidden_layers"),
            NumAttentionHeads = fields.RequiredPositiveInt("num_attention_heads"),
            NumKeyValueHeads = fields.RequiredPositiveInt("num_key_value_heads"),
            HeadDim = ParseHeadDim(fields),
            IntermediateSize = fields.RequiredPositiveInt("intermediate_size"),
            MoeIntermediateSize = fields.RequiredPositiveInt("moe_intermediate_size"),
            NumExperts = ParseNumExperts(fields),
            NumExpertsPerTok = fields.RequiredPositiveInt("num_experts_per_tok"),
            NormTopkProb = fields.OptionalBool("norm_topk_prob") ?? false,
            DecoderSparseStep = fields.OptionalPositiveInt("decoder_sparse_step") ?? 1,
            MlpOnlyLayers = fields.OptionalIntList("mlp_only_layers") ?? [],
            RmsNormEps = ParseRmsNormEps(fields),
            RopeTheta = ropeTheta,
            RopeScaling = ropeScaling,
            VocabSize = fields.RequiredPositiveInt("vocab_size"),
            TieWordEmbeddings = fields.OptionalBool("tie_word_embeddings") ?? false,
            MaxPositionEmbeddings = fields.RequiredPositiveInt("max_position_embeddings"),
            DType = ParseDType(fields),
            AttentionBias = fields.OptionalBool("attention_bias") ?? false,
            EosTokenIds = fields.IntOrIntList("eos_token_id"),
        };
        ValidateConsistency(config, fields);
        return config;
    }

    private static string ParseArchitecture(JsonObjectReader fields)
    {
        var architectures = fields.OptionalStringList("architectures");
        if (architectures is not null)
        {
            return architectures.Contains(Qwen3MoeArchitecture)
                ? Qwen3MoeArchitecture
                : throw fields.Error(
                    "architectures",
                    $"must name {Qwen3MoeArchitecture}, but is [{string.Join(", ", architectures)}]; RouteReplay runs Qwen3-MoE models only");
        }
        var modelType = fields.OptionalString("model_type");
        return modelType == Qwen3MoeModelType
            ? Qwen3MoeArchitecture
            : throw fields.Error(
                "architectures",
                $"is missing and model_type is '{modelType}', not '{Qwen3MoeModelType}'; RouteReplay runs Qwen3-MoE models only");
    }

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
