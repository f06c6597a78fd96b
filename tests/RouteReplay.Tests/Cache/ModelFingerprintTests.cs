using RouteReplay.Cache;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;
using RouteReplay.Tests.Model;

namespace RouteReplay.Tests.Cache;

public sealed class ModelFingerprintTests
{
    private const string Weights = "weights-v1";

    private static readonly ModelConfig Tiny = ModelPresets.Get("tiny").Config;

    private static readonly PayloadLayout Layout = new(16, TensorDType.F32, 4, 2, 16, 4 * 2 * 16 * 32 * 4, [new ChannelLayout("routing", 6)]);

    private static UInt128 Compute(ModelConfig config, string weights, PayloadLayout? layout = null) => ModelFingerprint.Compute(config, weights, layout ?? Layout);

    public static TheoryData<string> Variants() => [.. ConfigVariants().Keys];

    [Fact]
    public void The_same_config_and_weights_give_the_same_fingerprint()
    {
        Assert.Equal(Compute(Tiny, Weights), Compute(Tiny with { }, Weights));
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void Changing_a_field_changes_the_fingerprint(string field)
    {
        var changed = ConfigVariants()[field];
        Assert.NotEqual(Tiny, changed);
        Assert.NotEqual(Compute(Tiny, Weights), Compute(changed, Weights));
    }

    [Fact]
    public void Every_variant_has_its_own_fingerprint()
    {
        var fingerprints = ConfigVariants().Values.Select(config => Compute(config, Weights)).Append(Compute(Tiny, Weights));
        Assert.Equal(ConfigVariants().Count + 1, fingerprints.Distinct().Count());
    }

    [Fact]
    public void Changing_the_weights_identity_changes_the_fingerprint()
    {
        Assert.NotEqual(Compute(Tiny, "weights-v1"), Compute(Tiny, "weights-v2"));
        Assert.NotEqual(Compute(Tiny, ""), Compute(Tiny, " "));
    }

    [Fact]
    public void Every_rope_scaling_field_is_part_of_the_fingerprint()
    {
        var yarn = new RopeScaling("yarn", 4, 32_768, 1.1, 32, 1);
        RopeScaling[] variants =
        [
            yarn,
            yarn with { Type = "linear" },
            yarn with { Factor = 8 },
            yarn with { OriginalMaxPositionEmbeddings = null },
            yarn with { AttentionFactor = 1.2 },
            yarn with { BetaFast = 16 },
            yarn with { BetaSlow = 2 },
        ];
        var fingerprints = variants.Select(scaling => Compute(Tiny with { RopeScaling = scaling }, Weights));
        Assert.Equal(variants.Length, fingerprints.Distinct().Count());
    }

    public static TheoryData<string> LayoutVariants() => [.. PayloadLayoutVariants().Keys];

    [Theory]
    [MemberData(nameof(LayoutVariants))]
    public void Changing_the_payload_layout_changes_the_fingerprint(string field)
    {
        var changed = PayloadLayoutVariants()[field];
        Assert.NotEqual(Layout, changed);
        Assert.NotEqual(Compute(Tiny, Weights), Compute(Tiny, Weights, changed));
    }

    [Fact]
    public void Every_payload_layout_variant_has_its_own_fingerprint()
    {
        var fingerprints = PayloadLayoutVariants().Values.Select(layout => Compute(Tiny, Weights, layout)).Append(Compute(Tiny, Weights));
        Assert.Equal(PayloadLayoutVariants().Count + 1, fingerprints.Distinct().Count());
    }

    [Fact]
    public void An_engine_with_another_channel_set_roots_its_keys_elsewhere()
    {
        using var model = new Support.TinyModelFixture();
        var options = new RouteReplay.Engine.EngineOptions { NumBlocks = 8, SwapSpaceGiB = 0 };
        using var plain = Support.EngineRunner.Create(model, options, withTestChannel: false);
        using var withChannel = Support.EngineRunner.Create(model, options, withTestChannel: true);
        Assert.NotEqual(plain.RootKey, withChannel.RootKey);
        Assert.Equal(ModelFingerprint.Compute(model.Config, "test", withChannel.PayloadLayout), withChannel.Fingerprint);
        Assert.Equal(["routing", "token-position"], withChannel.PayloadLayout.Channels.Select(c => c.Name));
        Assert.Equal(withChannel.PayloadCopier.PayloadBytes, withChannel.PayloadLayout.PayloadBytes);
    }

    [Fact]
    public void The_canonical_text_names_the_kv_dtype_and_every_channel()
    {
        var text = ModelFingerprint.CanonicalText(Tiny, Weights, new PayloadLayout(16, TensorDType.BF16, 4, 2, 16, 8192, [new("routing", 6), new("gates", 12)]));
        Assert.Contains("kv_dtype=BF16\n", text, StringComparison.Ordinal);
        Assert.Contains("kv_shape=4,2,16,2,16\n", text, StringComparison.Ordinal);
        Assert.Contains("channel_count=2\n", text, StringComparison.Ordinal);
        Assert.Contains("channel=7:routing,row_bytes=6\nchannel=5:gates,row_bytes=12\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public void The_canonical_text_names_the_layout_version_and_the_routing_layout()
    {
        var text = ModelFingerprint.CanonicalText(Tiny, Weights, Layout);
        Assert.Contains($"payload_layout_version={ModelFingerprint.PayloadLayoutVersion}\n", text, StringComparison.Ordinal);
        Assert.Contains("moe_layers=1,2,3\n", text, StringComparison.Ordinal);
        Assert.Contains("routing_dtype=uint8\n", text, StringComparison.Ordinal);
        Assert.EndsWith($"weights_identity={Weights}\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public void The_weights_hash_changes_with_one_byte_of_one_file()
    {
        using var dir = new TempDirectory();
        var large = new byte[(3 << 20) + 17];
        new Random(1).NextBytes(large);
        File.WriteAllBytes(dir.File("model-00001-of-00002.safetensors"), large);
        File.WriteAllBytes(dir.File("model-00002-of-00002.safetensors"), [1, 2, 3]);
        var before = ModelFingerprint.HashWeights(dir.Path);

        large[^1] ^= 1;
        File.WriteAllBytes(dir.File("model-00001-of-00002.safetensors"), large);
        var after = ModelFingerprint.HashWeights(dir.Path);

        Assert.Matches("^[0-9a-f]{32}$", before);
        Assert.NotEqual(before, after);
        Assert.NotEqual(Compute(Tiny, before), Compute(Tiny, after));
    }

    [Fact]
    public void The_weights_hash_covers_every_weight_file_and_only_weight_files()
    {
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.File("a.safetensors"), [1, 2, 3]);
        File.WriteAllText(dir.File("config.json"), "{}");
        var before = ModelFingerprint.HashWeights(dir.Path);

        File.WriteAllText(dir.File("config.json"), "{\"x\": 1}");
        Assert.Equal(before, ModelFingerprint.HashWeights(dir.Path));

        File.WriteAllBytes(dir.File("b.safetensors"), []);
        Assert.NotEqual(before, ModelFingerprint.HashWeights(dir.Path));
    }

    [Fact]
    public void The_weights_hash_does_not_depend_on_file_creation_order()
    {
        using var first = new TempDirectory();
        using var second = new TempDirectory();
        File.WriteAllBytes(first.File("a.safetensors"), [1]);
        File.WriteAllBytes(first.File("b.safetensors"), [2]);
        File.WriteAllBytes(second.File("b.safetensors"), [2]);
        File.WriteAllBytes(second.File("a.safetensors"), [1]);
        Assert.Equal(ModelFingerprint.HashWeights(first.Path), ModelFingerprint.HashWeights(second.Path));
    }

    [Fact]
    public void Moving_bytes_between_weight_files_changes_the_weights_hash()
    {
        using var first = new TempDirectory();
        using var second = new TempDirectory();
        File.WriteAllBytes(first.File("a.safetensors"), [1, 2]);
        File.WriteAllBytes(first.File("b.safetensors"), [3]);
        File.WriteAllBytes(second.File("a.safetensors"), [1]);
        File.WriteAllBytes(second.File("b.safetensors"), [2, 3]);
        Assert.NotEqual(ModelFingerprint.HashWeights(first.Path), ModelFingerprint.HashWeights(second.Path));
    }

    [Fact]
    public void A_folder_without_weights_cannot_be_hashed()
    {
        using var dir = new TempDirectory();
        Assert.Throws<CheckpointException>(() => ModelFingerprint.HashWeights(dir.Path));
    }

    private static Dictionary<string, PayloadLayout> PayloadLayoutVariants() => new()
    {
        ["block_size"] = new PayloadLayout(32, Layout.KvDType, 4, 2, 16, Layout.KvBytesPerBlock * 2, Layout.Channels),
        ["kv_dtype"] = new PayloadLayout(16, TensorDType.BF16, 4, 2, 16, Layout.KvBytesPerBlock / 2, Layout.Channels),
        ["kv_bytes_per_block"] = new PayloadLayout(16, Layout.KvDType, 4, 2, 16, Layout.KvBytesPerBlock + 4, Layout.Channels),
        ["kv_heads"] = new PayloadLayout(16, Layout.KvDType, 4, 4, 8, Layout.KvBytesPerBlock, Layout.Channels),
        ["channel_row_bytes"] = new PayloadLayout(16, Layout.KvDType, 4, 2, 16, Layout.KvBytesPerBlock, [new("routing", 12)]),
        ["channel_name"] = new PayloadLayout(16, Layout.KvDType, 4, 2, 16, Layout.KvBytesPerBlock, [new("routinh", 6)]),
        ["extra_channel"] = new PayloadLayout(16, Layout.KvDType, 4, 2, 16, Layout.KvBytesPerBlock, [new("routing", 6), new("token-position", 8)]),
        ["channel_order"] = new PayloadLayout(16, Layout.KvDType, 4, 2, 16, Layout.KvBytesPerBlock, [new("token-position", 8), new("routing", 6)]),
        ["no_channel"] = new PayloadLayout(16, Layout.KvDType, 4, 2, 16, Layout.KvBytesPerBlock, []),
    };

    private static Dictionary<string, ModelConfig> ConfigVariants() => new()
    {
        ["architecture"] = Tiny with { Architecture = "Qwen3MoeForCausalLMv2" },
        ["hidden_size"] = Tiny with { HiddenSize = Tiny.HiddenSize * 2 },
        ["num_hidden_layers"] = Tiny with { NumHiddenLayers = Tiny.NumHiddenLayers + 1 },
        ["num_attention_heads"] = Tiny with { NumAttentionHeads = Tiny.NumAttentionHeads * 2 },
        ["num_key_value_heads"] = Tiny with { NumKeyValueHeads = Tiny.NumKeyValueHeads * 2 },
        ["head_dim"] = Tiny with { HeadDim = Tiny.HeadDim * 2 },
        ["intermediate_size"] = Tiny with { IntermediateSize = Tiny.IntermediateSize + 1 },
        ["moe_intermediate_size"] = Tiny with { MoeIntermediateSize = Tiny.MoeIntermediateSize + 1 },
        ["num_experts"] = Tiny with { NumExperts = Tiny.NumExperts + 1 },
        ["num_experts_per_tok"] = Tiny with { NumExpertsPerTok = Tiny.NumExpertsPerTok + 1 },
        ["norm_topk_prob"] = Tiny with { NormTopkProb = !Tiny.NormTopkProb },
        ["decoder_sparse_step"] = Tiny with { DecoderSparseStep = Tiny.DecoderSparseStep + 1 },
        ["mlp_only_layers"] = Tiny with { MlpOnlyLayers = [0, 1] },
        ["rms_norm_eps"] = Tiny with { RmsNormEps = Tiny.RmsNormEps * 10 },
        ["rope_theta"] = Tiny with { RopeTheta = Tiny.RopeTheta + 1 },
        ["rope_scaling"] = Tiny with { RopeScaling = new RopeScaling("linear", 2, null, null, null, null) },
        ["vocab_size"] = Tiny with { VocabSize = Tiny.VocabSize + 1 },
        ["tie_word_embeddings"] = Tiny with { TieWordEmbeddings = !Tiny.TieWordEmbeddings },
        ["max_position_embeddings"] = Tiny with { MaxPositionEmbeddings = Tiny.MaxPositionEmbeddings * 2 },
        ["dtype"] = Tiny with { DType = "float32" },
        ["attention_bias"] = Tiny with { AttentionBias = !Tiny.AttentionBias },
        ["routing_dtype"] = Tiny with { NumExperts = 300 },
    };
}
