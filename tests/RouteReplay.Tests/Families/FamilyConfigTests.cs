using System.Text.Json.Nodes;
using RouteReplay.Cache;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;
using RouteReplay.Tests.Model;

namespace RouteReplay.Tests.Families;

public sealed class FamilyConfigTests
{
    public static TheoryData<string> FamilyPresets =>
        [
            "olmoe-tiny", "qwen2-moe-tiny", "mixtral-tiny", "deepseek-v3-tiny", "gpt-oss-tiny",
            "olmoe-1b-7b", "qwen1.5-moe-a2.7b", "mixtral-8x7b", "moonlight-16b-a3b", "gpt-oss-20b",
        ];

    [Theory]
    [MemberData(nameof(FamilyPresets))]
    public void A_written_config_reads_back_as_the_preset(string preset)
    {
        using var dir = new TempDirectory();
        var config = ModelPresets.Get(preset).Config;
        var path = Path.Combine(dir.Path, "config.json");
        ModelConfigWriter.Write(config, path);
        Assert.Equal(config, ModelConfig.Load(path));
    }

    [Fact]
    public void Each_family_reads_its_own_fields()
    {
        var olmoe = Parse(ModelFamilies.Olmoe, root =>
        {
            root.Remove("moe_intermediate_size");
            root["intermediate_size"] = 1024;
            root["norm_topk_prob"] = false;
            root["clip_qkv"] = 8.0;
        });
        Assert.Equal((1024, 1024, QkNormKind.WholeProjection, 8.0), (olmoe.MoeIntermediateSize, olmoe.IntermediateSize, olmoe.QkNorm, olmoe.ClipQkv));

        var qwen2 = Parse(ModelFamilies.Qwen2Moe, root => root["shared_expert_intermediate_size"] = 5632);
        Assert.Equal((5632, true, true, false, QkNormKind.None), (qwen2.SharedExpertIntermediateSize, qwen2.SharedExpertGate, qwen2.AttentionBias, qwen2.OutputProjectionBias, qwen2.QkNorm));

        var mixtral = Parse(ModelFamilies.Mixtral, root =>
        {
            root.Remove("num_experts");
            root["num_local_experts"] = 8;
            root["sliding_window"] = 4096;
        });
        Assert.Equal((8, 4096, RouterScoring.SoftmaxOverSelected), (mixtral.NumExperts, mixtral.SlidingWindow, mixtral.Router.Scoring));
        Assert.Equal(4096, mixtral.WindowOf(0));
    }

    [Fact]
    public void Qwen3_keys_are_unchanged_and_families_never_share_keys()
    {
        var layout = new PayloadLayout(16, TensorDType.BF16, 4, 2, 16, 4096, []);
        var tiny = ModelPresets.Get("tiny").Config;
        Assert.DoesNotContain("model_type", ModelFingerprint.ArchitectureText(tiny));
        var fingerprints = new[] { "tiny", "olmoe-tiny", "qwen2-moe-tiny", "mixtral-tiny", "deepseek-v3-tiny", "gpt-oss-tiny" }
            .Select(name => ModelFingerprint.Compute(ModelPresets.Get(name).Config, "weights", layout))
            .ToArray();
        Assert.Equal(fingerprints.Length, fingerprints.Distinct().Count());
        var windowed = ModelPresets.Get("mixtral-tiny").Config;
        Assert.NotEqual(
            ModelFingerprint.Compute(windowed, "weights", layout),
            ModelFingerprint.Compute(windowed with { SlidingWindow = 32 }, "weights", layout));
    }

    [Fact]
    public void Deepseek_v3_reads_its_router_and_latent_attention()
    {
        var json = ConfigJson.Edit(ConfigJson.Transformers4, root =>
        {
            root["architectures"] = new JsonArray("DeepseekV3ForCausalLM");
            root["model_type"] = "deepseek_v3";
            root.Remove("num_experts");
            root["n_routed_experts"] = 256;
            root["num_experts_per_tok"] = 8;
            root["n_group"] = 8;
            root["topk_group"] = 4;
            root["n_shared_experts"] = 1;
            root["moe_intermediate_size"] = 2048;
            root["first_k_dense_replace"] = 3;
            root["routed_scaling_factor"] = 2.5;
            root["scoring_func"] = "sigmoid";
            root["topk_method"] = "noaux_tc";
            root["q_lora_rank"] = 1536;
            root["kv_lora_rank"] = 512;
            root["qk_nope_head_dim"] = 128;
            root["qk_rope_head_dim"] = 64;
            root["v_head_dim"] = 128;
            root["rope_scaling"] = new JsonObject
            {
                ["type"] = "yarn",
                ["factor"] = 40,
                ["mscale"] = 1.0,
                ["mscale_all_dim"] = 1.0,
                ["original_max_position_embeddings"] = 4096,
                ["beta_fast"] = 32,
                ["beta_slow"] = 1,
            };
        });
        var c = ModelConfig.Parse(json, "config.json");
        Assert.Equal(new RouterSpec(RouterScoring.Sigmoid, CorrectionBias: true, ExpertGroups: 8, TopKGroups: 4, ScalingFactor: 2.5), c.Router);
        Assert.Equal((256, 2048, 3, 64), (c.NumExperts, c.SharedExpertIntermediateSize, c.FirstKDenseReplace, c.HeadDim));
        Assert.Equal(Enumerable.Range(3, 45), c.MoeLayers);
        var mscale = (0.1 * Math.Log(40)) + 1;
        Assert.Equal(new MlaSpec(1536, 512, 128, 64, 128, true, mscale * mscale), c.Mla);
        Assert.Equal((576, 0), (c.KeyCacheWidth, c.ValueCacheWidth));
    }

    [Fact]
    public void Gpt_oss_reads_layer_types_sinks_clamped_experts_and_an_untruncated_yarn()
    {
        var c = ModelPresets.Get("gpt-oss-20b").Config;
        using var dir = new TempDirectory();
        var path = Path.Combine(dir.Path, "config.json");
        ModelConfigWriter.Write(c, path);
        var root = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        root.Remove("layer_types");
        root["quantization_config"] = new JsonObject { ["quant_method"] = "mxfp4" };
        var parsed = ModelConfig.Parse(root.ToJsonString(), "config.json");
        Assert.Equal(c, parsed);
        Assert.Equal((128, 0), (parsed.WindowOf(0), parsed.WindowOf(1)));
        Assert.Equal((true, 7.0, true), (parsed.AttentionSinks, parsed.SwigluLimit, parsed.Router.LogitBias));
        Assert.False(parsed.RopeScaling!.Truncate);

        root["layer_types"] = new JsonArray("sliding_attention");
        Assert.Contains("layer_types", Assert.Throws<CheckpointException>(() => ModelConfig.Parse(root.ToJsonString(), "config.json")).Message);
    }

    [Theory]
    [InlineData("topk_method", "greedy")]
    [InlineData("scoring_func", "softmax")]
    [InlineData("topk_group", "9")]
    public void Unsupported_deepseek_router_settings_are_named(string field, string value)
    {
        var config = ModelPresets.Get("deepseek-v3-tiny").Config;
        using var dir = new TempDirectory();
        var path = Path.Combine(dir.Path, "config.json");
        ModelConfigWriter.Write(config, path);
        var root = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        root[field] = int.TryParse(value, out var number) ? JsonValue.Create(number) : JsonValue.Create(value);
        var error = Assert.Throws<CheckpointException>(() => ModelConfig.Parse(root.ToJsonString(), "config.json"));
        Assert.Contains(field, error.Message);
    }

    [Theory]
    [InlineData("model_type", "llama")]
    [InlineData("hidden_act", "gelu")]
    [InlineData("scoring_func", "sigmoid")]
    public void Unsupported_settings_are_named_before_any_weight_is_read(string field, string value)
    {
        var json = ConfigJson.Edit(ConfigJson.Transformers4, root =>
        {
            if (field == "model_type")
            {
                root.Remove("architectures");
            }
            root[field] = value;
        });
        var error = Assert.Throws<CheckpointException>(() => ModelConfig.Parse(json, "config.json"));
        Assert.Contains(field, error.Message);
        Assert.Contains(value, error.Message);
    }

    [Fact]
    public void A_quantised_checkpoint_is_refused_naming_its_method()
    {
        var json = ConfigJson.With(ConfigJson.Transformers4, "quantization_config", new JsonObject { ["quant_method"] = "fp8" });
        var error = Assert.Throws<CheckpointException>(() => ModelConfig.Parse(json, "config.json"));
        Assert.Contains("quantization_config.quant_method", error.Message);
        Assert.Contains("fp8", error.Message);
    }

    [Fact]
    public void Sliding_window_qwen2_moe_is_refused()
    {
        var json = ConfigJson.Edit(ConfigJson.Transformers4, root =>
        {
            root["architectures"] = new JsonArray("Qwen2MoeForCausalLM");
            root["model_type"] = "qwen2_moe";
            root["shared_expert_intermediate_size"] = 64;
            root["use_sliding_window"] = true;
        });
        var error = Assert.Throws<CheckpointException>(() => ModelConfig.Parse(json, "config.json"));
        Assert.Contains("use_sliding_window", error.Message);
    }

    private static ModelConfig Parse(string modelType, Action<JsonObject> edit) =>
        ModelConfig.Parse(
            ConfigJson.Edit(ConfigJson.Transformers4, root =>
            {
                root["architectures"] = new JsonArray(ModelFamilies.ArchitectureOf(modelType));
                root["model_type"] = modelType;
                edit(root);
            }),
            "config.json");
}
