using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Model.Presets;

/// <summary>
/// The built-in presets for random-weight checkpoints (tests, demos, benchmarks): Qwen3-MoE's <c>tiny</c> and
/// <c>small</c>, a tiny shape of every other family (<c>*-tiny</c>), and real architectures (<c>qwen3-30b-a3b</c>,
/// <c>olmoe-1b-7b</c>, <c>qwen1.5-moe-a2.7b</c>, <c>mixtral-8x7b</c>) meant for <c>--load-format dummy</c>. Every
/// tiny shape uses the Qwen3 tokenizer's vocabulary, so the built-in tokenizer serves it.
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
        new("olmoe-tiny", Olmoe() with
        {
            HiddenSize = 64,
            NumHiddenLayers = 4,
            NumAttentionHeads = 4,
            NumKeyValueHeads = 4,
            HeadDim = 16,
            NumExperts = 8,
            NumExpertsPerTok = 2,
            MoeIntermediateSize = 32,
            IntermediateSize = 32,
        }),
        new("qwen2-moe-tiny", Qwen2Moe() with
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
            SharedExpertIntermediateSize = 64,
            IntermediateSize = 128,
        }),
        new("mixtral-tiny", Mixtral() with
        {
            HiddenSize = 64,
            NumHiddenLayers = 4,
            NumAttentionHeads = 4,
            NumKeyValueHeads = 2,
            HeadDim = 16,
            NumExperts = 8,
            NumExpertsPerTok = 2,
            MoeIntermediateSize = 32,
            IntermediateSize = 32,
            SlidingWindow = 16,
        }),
        new("deepseek-v3-tiny", DeepseekV3() with
        {
            HiddenSize = 64,
            NumHiddenLayers = 4,
            FirstKDenseReplace = 1,
            NumAttentionHeads = 4,
            NumKeyValueHeads = 4,
            HeadDim = 8,
            Mla = new MlaSpec(QLoraRank: 32, KvLoraRank: 32, QkNopeHeadDim: 16, QkRopeHeadDim: 8, VHeadDim: 16, RopeInterleave: true),
            NumExperts = 16,
            NumExpertsPerTok = 4,
            Router = new RouterSpec(RouterScoring.Sigmoid, CorrectionBias: true, ExpertGroups: 4, TopKGroups: 2, ScalingFactor: 2.5),
            MoeIntermediateSize = 32,
            SharedExpertIntermediateSize = 32,
            IntermediateSize = 128,
        }),
        new("gpt-oss-tiny", GptOss() with
        {
            HiddenSize = 64,
            NumHiddenLayers = 4,
            NumAttentionHeads = 4,
            NumKeyValueHeads = 2,
            HeadDim = 16,
            NumExperts = 8,
            NumExpertsPerTok = 2,
            MoeIntermediateSize = 32,
            IntermediateSize = 32,
            SlidingWindow = 8,
            SlidingLayers = [0, 2],
        }),
        new("olmoe-1b-7b", Olmoe() with
        {
            HiddenSize = 2048,
            NumHiddenLayers = 16,
            NumAttentionHeads = 16,
            NumKeyValueHeads = 16,
            HeadDim = 128,
            NumExperts = 64,
            NumExpertsPerTok = 8,
            MoeIntermediateSize = 1024,
            IntermediateSize = 1024,
            RopeTheta = 10_000,
            RmsNormEps = 1e-5,
            VocabSize = 50_304,
            TieWordEmbeddings = false,
            EosTokenIds = [50_279],
        }),
        new("qwen1.5-moe-a2.7b", Qwen2Moe() with
        {
            HiddenSize = 2048,
            NumHiddenLayers = 24,
            NumAttentionHeads = 16,
            NumKeyValueHeads = 16,
            HeadDim = 128,
            NumExperts = 60,
            NumExpertsPerTok = 4,
            MoeIntermediateSize = 1408,
            SharedExpertIntermediateSize = 5632,
            IntermediateSize = 5632,
            TieWordEmbeddings = false,
            MaxPositionEmbeddings = 8192,
            EosTokenIds = [151_643],
        }),
        new("mixtral-8x7b", Mixtral() with
        {
            HiddenSize = 4096,
            NumHiddenLayers = 32,
            NumAttentionHeads = 32,
            NumKeyValueHeads = 8,
            HeadDim = 128,
            NumExperts = 8,
            NumExpertsPerTok = 2,
            MoeIntermediateSize = 14_336,
            IntermediateSize = 14_336,
            RmsNormEps = 1e-5,
            VocabSize = 32_000,
            TieWordEmbeddings = false,
            MaxPositionEmbeddings = 32_768,
            EosTokenIds = [2],
        }),
        new("gpt-oss-20b", GptOss() with
        {
            HiddenSize = 2880,
            NumHiddenLayers = 24,
            NumAttentionHeads = 64,
            NumKeyValueHeads = 8,
            HeadDim = 64,
            NumExperts = 32,
            NumExpertsPerTok = 4,
            MoeIntermediateSize = 2880,
            IntermediateSize = 2880,
            SlidingWindow = 128,
            SlidingLayers = Enumerable.Range(0, 12).Select(i => 2 * i).ToArray(),
            VocabSize = 201_088,
            TieWordEmbeddings = false,
            EosTokenIds = [200_002],
        }),
        new("moonlight-16b-a3b", DeepseekV3() with
        {
            HiddenSize = 2048,
            NumHiddenLayers = 27,
            FirstKDenseReplace = 1,
            NumAttentionHeads = 16,
            NumKeyValueHeads = 16,
            HeadDim = 64,
            Mla = new MlaSpec(QLoraRank: 0, KvLoraRank: 512, QkNopeHeadDim: 128, QkRopeHeadDim: 64, VHeadDim: 128, RopeInterleave: true),
            NumExperts = 64,
            NumExpertsPerTok = 6,
            Router = new RouterSpec(RouterScoring.Sigmoid, CorrectionBias: true, ExpertGroups: 1, TopKGroups: 1, ScalingFactor: 2.446),
            MoeIntermediateSize = 1408,
            SharedExpertIntermediateSize = 2816,
            IntermediateSize = 11_264,
            RopeTheta = 50_000,
            RmsNormEps = 1e-5,
            VocabSize = 163_840,
            TieWordEmbeddings = false,
            MaxPositionEmbeddings = 8192,
            EosTokenIds = [],
        }),
    ];

    /// <summary>The preset names, in the order listed above.</summary>
    public static IReadOnlyList<string> Names { get; } = Presets.Select(preset => preset.Name).ToArray();

    /// <summary>The preset named <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">No preset has that name; the message lists the valid names.</exception>
    public static ModelPreset Get(string name) =>
        Presets.FirstOrDefault(preset => preset.Name == name)
        ?? throw new ArgumentException($"unknown model preset '{name}'; valid presets: {string.Join(", ", Names)}", nameof(name));

    /// <summary>OLMoE: softmax router without renormalisation, MHA with q/k norm over the whole projection.</summary>
    private static ModelConfig Olmoe() => Qwen3Moe() with
    {
        Architecture = ModelFamilies.ArchitectureOf(ModelFamilies.Olmoe),
        ModelType = ModelFamilies.Olmoe,
        NormTopkProb = false,
        QkNorm = QkNormKind.WholeProjection,
        RopeTheta = 10_000,
    };

    /// <summary>Qwen2-MoE: a shared expert with a sigmoid gate, q/k/v biases, no q/k norm.</summary>
    private static ModelConfig Qwen2Moe() => Qwen3Moe() with
    {
        Architecture = ModelFamilies.ArchitectureOf(ModelFamilies.Qwen2Moe),
        ModelType = ModelFamilies.Qwen2Moe,
        NormTopkProb = false,
        SharedExpertGate = true,
        AttentionBias = true,
        QkNorm = QkNormKind.None,
    };

    /// <summary>Mixtral: top-k on the router logits, softmax over the k; GQA without q/k norm.</summary>
    private static ModelConfig Mixtral() => Qwen3Moe() with
    {
        Architecture = ModelFamilies.ArchitectureOf(ModelFamilies.Mixtral),
        ModelType = ModelFamilies.Mixtral,
        Router = new RouterSpec(RouterScoring.SoftmaxOverSelected),
        NormTopkProb = false,
        QkNorm = QkNormKind.None,
    };

    /// <summary>
    /// gpt-oss: router bias and a softmax over the selected logits, clamped SwiGLU experts with biases, attention
    /// biases and sinks, sliding-window layers alternating with full ones, YaRN RoPE without truncation.
    /// </summary>
    private static ModelConfig GptOss() => Qwen3Moe() with
    {
        Architecture = ModelFamilies.ArchitectureOf(ModelFamilies.GptOss),
        ModelType = ModelFamilies.GptOss,
        NormTopkProb = false,
        Router = new RouterSpec(RouterScoring.SoftmaxOverSelected, LogitBias: true),
        QkNorm = QkNormKind.None,
        AttentionBias = true,
        OutputProjectionBias = true,
        AttentionSinks = true,
        SwigluLimit = 7.0,
        ExpertBiases = true,
        RmsNormEps = 1e-5,
        RopeTheta = 150_000,
        RopeScaling = new RopeScaling("yarn", 32, 4096, null, 32, 1, Truncate: false),
        MaxPositionEmbeddings = 131_072,
    };

    /// <summary>DeepSeek-V3: sigmoid router with a selection bias and group limit, shared experts, latent attention.</summary>
    private static ModelConfig DeepseekV3() => Qwen3Moe() with
    {
        Architecture = ModelFamilies.ArchitectureOf(ModelFamilies.DeepseekV3),
        ModelType = ModelFamilies.DeepseekV3,
        NormTopkProb = true,
        QkNorm = QkNormKind.None,
    };

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
