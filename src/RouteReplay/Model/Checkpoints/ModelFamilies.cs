namespace RouteReplay.Model.Checkpoints;

/// <summary>The MoE families the engine runs, by transformers' <c>model_type</c>, and their architecture names.</summary>
public static class ModelFamilies
{
    public const string Qwen3Moe = "qwen3_moe";
    public const string Olmoe = "olmoe";
    public const string Qwen2Moe = "qwen2_moe";
    public const string Mixtral = "mixtral";
    public const string DeepseekV3 = "deepseek_v3";
    public const string GptOss = "gpt_oss";

    private static readonly (string ModelType, string Architecture)[] Known =
    [
        (Qwen3Moe, "Qwen3MoeForCausalLM"),
        (Olmoe, "OlmoeForCausalLM"),
        (Qwen2Moe, "Qwen2MoeForCausalLM"),
        (Mixtral, "MixtralForCausalLM"),
        (DeepseekV3, "DeepseekV3ForCausalLM"),
        (GptOss, "GptOssForCausalLM"),
    ];

    /// <summary>The supported <c>model_type</c> values.</summary>
    public static IReadOnlyList<string> ModelTypes { get; } = Known.Select(k => k.ModelType).ToArray();

    /// <summary>The architecture name of <paramref name="modelType"/>.</summary>
    public static string ArchitectureOf(string modelType) =>
        Known.First(k => k.ModelType == modelType).Architecture;

    /// <summary>The model type whose architecture is <paramref name="architecture"/>, or null.</summary>
    public static string? ModelTypeOf(string architecture) =>
        Known.FirstOrDefault(k => k.Architecture == architecture).ModelType;
}
