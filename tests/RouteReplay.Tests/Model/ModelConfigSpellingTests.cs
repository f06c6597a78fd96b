using System.Text.Json.Nodes;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Tests.Model;

public sealed class ModelConfigSpellingTests
{
    [Fact]
    public void Transformers_4_config_parses_every_field()
    {
        var config = ModelConfig.Parse(ConfigJson.Transformers4, "config.json");

        Assert.Equal("Qwen3MoeForCausalLM", config.Architecture);
        Assert.Equal(2048, config.HiddenSize);
        Assert.Equal(48, config.NumHiddenLayers);
        Assert.Equal(32, config.NumAttentionHeads);
        Assert.Equal(4, config.NumKeyValueHeads);
        Assert.Equal(128, config.HeadDim);
        Assert.Equal(6144, config.IntermediateSize);
        Assert.Equal(768, config.MoeIntermediateSize);
        Assert.Equal(128, config.NumExperts);
        Assert.Equal(8, config.NumExpertsPerTok);
        Assert.True(config.NormTopkProb);
        Assert.Equal(1, config.DecoderSparseStep);
        Assert.Empty(config.MlpOnlyLayers);
        Assert.Equal(1e-6, config.RmsNormEps);
        Assert.Equal(1_000_000, config.RopeTheta);
        Assert.Equal(new RopeScaling("yarn", 4.0, 32768, null, null, null), config.RopeScaling);
        Assert.Equal(151936, config.VocabSize);
        Assert.False(config.TieWordEmbeddings);
        Assert.Equal(40960, config.MaxPositionEmbeddings);
        Assert.Equal("bfloat16", config.DType);
        Assert.False(config.AttentionBias);
        Assert.Equal([151645], config.EosTokenIds);
    }

    [Fact]
    public void Transformers_4_and_5_spellings_give_equal_configs()
    {
        var v4 = ModelConfig.Parse(ConfigJson.Transformers4, "v4/config.json");
        var v5 = ModelConfig.Parse(ConfigJson.Transformers5, "v5/config.json");
        Assert.Equal(v4, v5);
        Assert.Equal(v4.GetHashCode(), v5.GetHashCode());
    }

    [Fact]
    public void Default_rope_type_in_rope_parameters_means_no_scaling()
    {
        var v5 = ConfigJson.With(ConfigJson.Transformers5, "rope_parameters",
            new JsonObject { ["rope_theta"] = 10000.0, ["rope_type"] = "default" });
        var v4 = ConfigJson.Edit(ConfigJson.Transformers4, root =>
        {
            root["rope_theta"] = 10000;
            root["rope_scaling"] = null;
        });
        var parsed = ModelConfig.Parse(v5, "config.json");
        Assert.Null(parsed.RopeScaling);
        Assert.Equal(10000, parsed.RopeTheta);
        Assert.Equal(ModelConfig.Parse(v4, "config.json"), parsed);
    }

    [Fact]
    public void Rope_scaling_accepts_type_as_well_as_rope_type()
    {
        var json = ConfigJson.With(ConfigJson.Transformers4, "rope_scaling",
            new JsonObject { ["type"] = "linear", ["factor"] = 2 });
        Assert.Equal(new RopeScaling("linear", 2, null, null, null, null), ModelConfig.Parse(json, "config.json").RopeScaling);
    }

    [Fact]
    public void Yarn_reads_all_its_parameters()
    {
        var json = ConfigJson.With(ConfigJson.Transformers4, "rope_scaling", new JsonObject
        {
            ["rope_type"] = "yarn",
            ["factor"] = 8.0,
            ["original_max_position_embeddings"] = 4096,
            ["attention_factor"] = 1.25,
            ["beta_fast"] = 16.0,
            ["beta_slow"] = 2.0,
        });
        Assert.Equal(new RopeScaling("yarn", 8, 4096, 1.25, 16, 2), ModelConfig.Parse(json, "config.json").RopeScaling);
    }

    [Fact]
    public void Optional_fields_take_their_defaults()
    {
        var json = ConfigJson.Edit(ConfigJson.Transformers4, root =>
        {
            foreach (var field in new[] { "head_dim", "norm_topk_prob", "decoder_sparse_step", "mlp_only_layers", "rms_norm_eps",
                         "tie_word_embeddings", "attention_bias", "eos_token_id", "rope_scaling" })
            {
                root.Remove(field);
            }
        });
        var config = ModelConfig.Parse(json, "config.json");
        Assert.Equal(2048 / 32, config.HeadDim);
        Assert.False(config.NormTopkProb);
        Assert.Equal(1, config.DecoderSparseStep);
        Assert.Empty(config.MlpOnlyLayers);
        Assert.Equal(1e-6, config.RmsNormEps);
        Assert.False(config.TieWordEmbeddings);
        Assert.False(config.AttentionBias);
        Assert.Empty(config.EosTokenIds);
        Assert.Null(config.RopeScaling);
    }

    [Fact]
    public void Eos_token_id_may_be_an_integer_a_list_or_null()
    {
        Assert.Equal([7], Parse("eos_token_id", 7).EosTokenIds);
        Assert.Equal([151645, 151643], Parse("eos_token_id", new JsonArray(151645, 151643)).EosTokenIds);
        Assert.Empty(Parse("eos_token_id", null).EosTokenIds);
    }

    [Fact]
    public void Unknown_keys_are_ignored()
    {
        var json = ConfigJson.Edit(ConfigJson.Transformers4, root =>
        {
            root["some_future_field"] = new JsonObject { ["nested"] = new JsonArray(1, "two", null) };
            root["another_future_field"] = "whatever";
        });
        Assert.Equal(ModelConfig.Parse(ConfigJson.Transformers4, "a"), ModelConfig.Parse(json, "b"));
    }

    [Fact]
    public void Model_type_identifies_the_architecture_when_architectures_is_missing()
    {
        var json = ConfigJson.Without(ConfigJson.Transformers4, "architectures");
        Assert.Equal("Qwen3MoeForCausalLM", ModelConfig.Parse(json, "config.json").Architecture);
    }

    [Fact]
    public void Load_reads_the_file()
    {
        using var dir = new TempDirectory();
        var path = dir.File("config.json");
        File.WriteAllText(path, ConfigJson.Transformers5);
        Assert.Equal(ModelConfig.Parse(ConfigJson.Transformers4, "x"), ModelConfig.Load(path));
    }

    [Fact]
    public void Equality_compares_lists_by_their_elements()
    {
        var config = ModelConfig.Parse(ConfigJson.Transformers4, "config.json");
        Assert.Equal(config, config with { MlpOnlyLayers = [], EosTokenIds = [151645] });
        Assert.NotEqual(config, config with { MlpOnlyLayers = [3] });
        Assert.NotEqual(config, config with { EosTokenIds = [151645, 1] });
        Assert.NotEqual(config, config with { RopeScaling = null });
    }

    private static ModelConfig Parse(string field, JsonNode? value) =>
        ModelConfig.Parse(ConfigJson.With(ConfigJson.Transformers4, field, value), "config.json");
}
