using System.Text.Json.Nodes;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Tests.Model;

public sealed class ModelConfigErrorTests
{
    private const string FileName = "/models/broken/config.json";

    [Theory]
    [InlineData("hidden_size")]
    [InlineData("num_hidden_layers")]
    [InlineData("num_attention_heads")]
    [InlineData("num_key_value_heads")]
    [InlineData("intermediate_size")]
    [InlineData("moe_intermediate_size")]
    [InlineData("num_experts")]
    [InlineData("num_experts_per_tok")]
    [InlineData("rope_theta")]
    [InlineData("vocab_size")]
    [InlineData("max_position_embeddings")]
    [InlineData("torch_dtype")]
    public void Missing_required_field_is_named(string field)
    {
        AssertNamesField(ConfigJson.Without(ConfigJson.Transformers4, field), field);
    }

    [Fact]
    public void Missing_rope_theta_in_rope_parameters_is_named()
    {
        var json = ConfigJson.With(ConfigJson.Transformers5, "rope_parameters", new JsonObject { ["rope_type"] = "default" });
        AssertNamesField(json, "rope_parameters.rope_theta");
    }

    [Theory]
    [InlineData("hidden_size", "\"2048\"")]
    [InlineData("num_experts", "12.5")]
    [InlineData("norm_topk_prob", "1")]
    [InlineData("rms_norm_eps", "\"1e-6\"")]
    [InlineData("mlp_only_layers", "[0, \"1\"]")]
    [InlineData("mlp_only_layers", "3")]
    [InlineData("eos_token_id", "\"</s>\"")]
    [InlineData("torch_dtype", "16")]
    [InlineData("rope_scaling", "\"yarn\"")]
    [InlineData("architectures", "\"Qwen3MoeForCausalLM\"")]
    [InlineData("vocab_size", "99999999999")]
    public void Wrong_json_type_is_named(string field, string value)
    {
        AssertNamesField(ConfigJson.With(ConfigJson.Transformers4, field, JsonNode.Parse(value)), field);
    }

    [Fact]
    public void Wrong_type_inside_rope_parameters_is_named_with_its_path()
    {
        var json = ConfigJson.With(ConfigJson.Transformers5, "rope_parameters",
            new JsonObject { ["rope_theta"] = 1e6, ["rope_type"] = "yarn", ["factor"] = "four" });
        AssertNamesField(json, "rope_parameters.factor");
    }

    [Fact]
    public void Unsupported_architecture_names_architectures()
    {
        var json = ConfigJson.With(ConfigJson.Transformers4, "architectures", new JsonArray("LlamaForCausalLM"));
        var error = AssertNamesField(json, "architectures");
        Assert.Contains("LlamaForCausalLM", error.Message);
    }

    [Fact]
    public void Unknown_model_type_without_architectures_names_model_type()
    {
        var json = ConfigJson.Edit(ConfigJson.Transformers4, root =>
        {
            root.Remove("architectures");
            root["model_type"] = "llama";
        });
        Assert.Contains("llama", AssertNamesField(json, "model_type").Message);
    }

    [Theory]
    [InlineData("hidden_size", 0)]
    [InlineData("num_attention_heads", -4)]
    [InlineData("num_key_value_heads", 5)]
    [InlineData("num_experts_per_tok", 129)]
    [InlineData("decoder_sparse_step", 0)]
    [InlineData("torch_dtype", "int8")]
    public void Invalid_values_are_named(string field, object value)
    {
        var node = value is string text ? JsonValue.Create(text) : JsonValue.Create((int)value);
        AssertNamesField(ConfigJson.With(ConfigJson.Transformers4, field, node), field);
    }

    [Theory]
    [InlineData(48)]
    [InlineData(-1)]
    public void Mlp_only_layers_out_of_range_are_named(int layer)
    {
        AssertNamesField(ConfigJson.With(ConfigJson.Transformers4, "mlp_only_layers", new JsonArray(0, layer)), "mlp_only_layers");
    }

    [Fact]
    public void Unsupported_rope_scaling_type_is_named()
    {
        var v4 = ConfigJson.With(ConfigJson.Transformers4, "rope_scaling", new JsonObject { ["rope_type"] = "dynamic", ["factor"] = 2.0 });
        Assert.Contains("dynamic", AssertNamesField(v4, "rope_scaling").Message);
        var v5 = ConfigJson.With(ConfigJson.Transformers5, "rope_parameters",
            new JsonObject { ["rope_theta"] = 1e6, ["rope_type"] = "longrope" });
        Assert.Contains("longrope", AssertNamesField(v5, "rope_parameters").Message);
    }

    [Fact]
    public void Rope_scaling_without_a_factor_is_named()
    {
        var json = ConfigJson.With(ConfigJson.Transformers4, "rope_scaling", new JsonObject { ["rope_type"] = "linear" });
        AssertNamesField(json, "rope_scaling.factor");
    }

    [Theory]
    [InlineData("{\"hidden_size\": 64,")]
    [InlineData("[1, 2]")]
    [InlineData("")]
    public void Text_that_is_not_a_json_object_names_the_file(string json)
    {
        var error = Assert.Throws<CheckpointException>(() => ModelConfig.Parse(json, FileName));
        Assert.Equal(FileName, error.FileName);
        Assert.Contains(FileName, error.Message);
    }

    [Fact]
    public void Missing_file_names_the_file()
    {
        using var dir = new TempDirectory();
        var path = dir.File("config.json");
        var error = Assert.Throws<CheckpointException>(() => ModelConfig.Load(path));
        Assert.Equal(path, error.FileName);
    }

    private static CheckpointException AssertNamesField(string json, string field)
    {
        var error = Assert.Throws<CheckpointException>(() => ModelConfig.Parse(json, FileName));
        Assert.Equal(field, error.Field);
        Assert.Equal(FileName, error.FileName);
        Assert.Contains(field, error.Message);
        Assert.Contains(FileName, error.Message);
        return error;
    }
}
