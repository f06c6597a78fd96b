using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;

namespace RouteReplay.Tests.Model;

public sealed class ModelPresetsTests
{
    [Fact]
    public void Lists_the_qwen3_presets_then_every_family_tiny_and_real_shape()
    {
        Assert.Equal(
            [
                "tiny", "small", "qwen3-30b-a3b", "olmoe-tiny", "qwen2-moe-tiny", "mixtral-tiny", "deepseek-v3-tiny", "gpt-oss-tiny",
                "olmoe-1b-7b", "qwen1.5-moe-a2.7b", "mixtral-8x7b", "gpt-oss-20b", "moonlight-16b-a3b",
            ],
            ModelPresets.Names);
        Assert.All(ModelPresets.Names, name => Assert.Equal(name, ModelPresets.Get(name).Name));
    }

    [Fact]
    public void Unknown_name_lists_the_valid_ones()
    {
        var error = Assert.Throws<ArgumentException>(() => ModelPresets.Get("huge"));
        Assert.Contains("huge", error.Message);
        Assert.Contains("tiny", error.Message);
        Assert.Contains("small", error.Message);
    }

    [Fact]
    public void Tiny_has_a_dense_first_layer_and_three_moe_layers()
    {
        var config = ModelPresets.Get("tiny").Config;
        Assert.Equal((64, 4, 4, 2, 16), (config.HiddenSize, config.NumHiddenLayers, config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim));
        Assert.Equal((8, 2, 32, 128), (config.NumExperts, config.NumExpertsPerTok, config.MoeIntermediateSize, config.IntermediateSize));
        Assert.Equal([1, 2, 3], config.MoeLayers);
        AssertSharedSettings(config);
    }

    [Fact]
    public void Small_has_eight_moe_layers_of_64_experts()
    {
        var config = ModelPresets.Get("small").Config;
        Assert.Equal((256, 8, 8, 2, 32), (config.HiddenSize, config.NumHiddenLayers, config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim));
        Assert.Equal((64, 8, 128, 512), (config.NumExperts, config.NumExpertsPerTok, config.MoeIntermediateSize, config.IntermediateSize));
        Assert.Equal(Enumerable.Range(0, 8), config.MoeLayers);
        AssertSharedSettings(config);
    }

    [Fact]
    public void Qwen3_30b_a3b_is_the_real_architecture()
    {
        var c = ModelPresets.Get("qwen3-30b-a3b").Config;
        Assert.Equal((2048, 48, 32, 4, 128), (c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim));
        Assert.Equal((128, 8, 768, 6144), (c.NumExperts, c.NumExpertsPerTok, c.MoeIntermediateSize, c.IntermediateSize));
        Assert.Equal((151_936, false, 1e-6, 1_000_000.0, true), (c.VocabSize, c.TieWordEmbeddings, c.RmsNormEps, c.RopeTheta, c.NormTopkProb));
        Assert.Equal(Enumerable.Range(0, 48), c.MoeLayers);
        Assert.Equal(40960, c.MaxPositionEmbeddings);
        var bytes = WeightLayout.Enumerate(c).Sum(w => TensorShapes.ElementCount(w.Shape) * 2);
        Assert.InRange(bytes, 61_000_000_000, 61_100_000_000);
    }

    [Fact]
    public void Make_model_refuses_a_preset_too_large_to_make_in_memory_and_names_the_dummy_format()
    {
        using var dir = new TempDirectory();
        var error = Assert.Throws<ArgumentException>(() => ModelMaker.Make(ModelPresets.Get("qwen3-30b-a3b"), dir.File("out")));
        Assert.Contains("--load-format dummy", error.Message);
        Assert.False(Directory.Exists(dir.File("out")));
    }

    [Theory]
    [InlineData("tiny")]
    [InlineData("small")]
    [InlineData("qwen3-30b-a3b")]
    public void Config_round_trips_through_config_json(string name)
    {
        using var dir = new TempDirectory();
        var config = ModelPresets.Get(name).Config;
        ModelConfigWriter.Write(config, dir.File("config.json"));
        Assert.Equal(config, ModelConfig.Load(dir.File("config.json")));
    }

    private static void AssertSharedSettings(ModelConfig config)
    {
        Assert.Equal("Qwen3MoeForCausalLM", config.Architecture);
        Assert.True(config.NormTopkProb);
        Assert.Equal(1, config.DecoderSparseStep);
        Assert.Equal(151936, config.VocabSize);
        Assert.True(config.TieWordEmbeddings);
        Assert.Equal(1e-6, config.RmsNormEps);
        Assert.Equal(1_000_000, config.RopeTheta);
        Assert.Null(config.RopeScaling);
        Assert.Equal(4096, config.MaxPositionEmbeddings);
        Assert.Equal("bfloat16", config.DType);
        Assert.Equal([151645, 151643], config.EosTokenIds);
        Assert.False(config.AttentionBias);
    }
}
