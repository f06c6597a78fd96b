using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Model.Presets;

/// <summary>
/// The built-in Qwen3-MoE presets for random-weight checkpoints (tests, demos, benchmarks). <c>qwen3-30b-a3b</c> is
/// the real Qwen3-30B-A3B architecture (61 GB of bf16 weights), meant for <c>--load-format dummy</c> on a GPU.
/// </summary>
public static class ModelPresets
{
    private static readonly ModelPreset[] Presets =
    [
        new("tiny", Qwen3Moe() with
        {
            HiddenSize = 64,
            NumHiddenLayers = 4,
            MlpOnlyLayers = [0],
            NumAttentionHeads = 4,
            NumKeyValueHeads = 2,
            HeadDim = 16,
            NumExperts = 8,
            NumExpertsPerTok = 2,
            MoeIntermediateSize = 32,
            IntermediateSize = 128,
        }),
        new("small", Qwen3Moe() with
        {
            HiddenSize = 256,
            NumHiddenLayers = 8,
            MlpOnlyLayers = [],
            NumAttentionHeads = 8,
            NumKeyValueHeads = 2,
            HeadDim = 32,
            NumExperts = 64,
            NumExpertsPerTok = 8,
            MoeIntermediateSize = 128,
            IntermediateSize = 512,
        }),
        new("qwen3-30b-a3b", Qwen3Moe() with
        {
            HiddenSize = 2048,
            NumHiddenLayers = 48,
            MlpOnlyLayers = [],
            NumAttentionHeads = 32,
            NumKeyValueHeads = 4,
            HeadDim = 128,
            NumExperts = 128,
            NumExpertsPerTok = 8,
            MoeIntermediateSize = 768,
            IntermediateSize = 6144,
            TieWordEmbeddings = false,
            MaxPositionEmbeddings = 40960,
        }),
    ];

    /// <summary>The preset names, in the order listed above.</summary>
    public static IReadOnlyList<string> Names { get; } = Presets.Select(preset => preset.Name).ToArray();

    /// <summary>The preset named <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">No preset has that name; the message lists the valid names.</exception>
    public static ModelPreset Get(string name) =>
        Presets.FirstOrDefault(preset => preset.Name == name)
        ?? throw new ArgumentException($"unknown model preset '{name}'; valid presets: {string.Join(", ", Names)}", nameof(name));

    /// <summary>The settings all presets share; the size fields are overwritten by each preset.</summary>
    private static ModelConfig Qwen3Moe() => new()
    {
        Architecture = ModelConfigParser.Qwen3MoeArchitecture,
        HiddenSize = 0,
        NumHiddenLayers = 0,
        NumAttentionHeads = 0,
        NumKeyValueHeads = 0,
        HeadDim = 0,
        IntermediateSize = 0,
        MoeIntermediateSize = 0,
        NumExperts = 0,
        NumExpertsPerTok = 0,
        NormTopkProb = true,
        DecoderSparseStep = 1,
        RmsNormEps = 1e-6,
        RopeTheta = 1_000_000,
        RopeScaling = null,
        VocabSize = 151_936,
        TieWordEmbeddings = true,
        MaxPositionEmbeddings = 4096,
        DType = "bfloat16",
        AttentionBias = false,
        EosTokenIds = [151_645, 151_643],
    };
}
