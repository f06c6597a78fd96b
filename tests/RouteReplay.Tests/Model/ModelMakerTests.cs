using System.Text.Json;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;

namespace RouteReplay.Tests.Model;

public sealed class ModelMakerTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Same_seed_gives_byte_identical_files()
    {
        var first = Make("first", seed: 42);
        var second = Make("second", seed: 42);

        var names = FileNames(first);
        Assert.Equal(["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"], names);
        Assert.Equal(names, FileNames(second));
        Assert.All(names, name => Assert.Equal(File.ReadAllBytes(Path.Combine(first, name)), File.ReadAllBytes(Path.Combine(second, name))));
    }

    [Fact]
    public void Different_seed_gives_different_weights_and_the_same_config()
    {
        var first = Make("first", seed: 1);
        var second = Make("second", seed: 2);

        Assert.NotEqual(File.ReadAllBytes(Path.Combine(first, "model.safetensors")), File.ReadAllBytes(Path.Combine(second, "model.safetensors")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(first, "config.json")), File.ReadAllBytes(Path.Combine(second, "config.json")));
    }

    [Fact]
    public void Made_checkpoint_opens_with_every_tensor_in_its_expected_shape()
    {
        var preset = ModelPresets.Get("tiny");
        using var checkpoint = Checkpoint.Open(Make("model", seed: 0));

        Assert.Equal(preset.Config, checkpoint.Config);
        Assert.Equal([151645, 151643], checkpoint.EosTokenIds);
        Assert.Equal(new GenerationConfig([151645, 151643]), checkpoint.Generation);
        var expected = ExpectedTinyTensors();
        foreach (var (name, shape) in expected)
        {
            Assert.Equal(shape.Aggregate(1L, (a, b) => a * b), checkpoint.ReadFloat32(name, shape).Length);
        }
        Assert.False(checkpoint.HasTensor("lm_head.weight"));
        Assert.False(checkpoint.HasTensor("model.layers.0.mlp.gate.weight"));
        Assert.False(checkpoint.HasTensor("model.layers.1.mlp.gate_proj.weight"));
        using var weights = SafetensorsFile.Open(Path.Combine(checkpoint.Directory, "model.safetensors"));
        Assert.Equal(expected.Count, weights.Tensors.Count);
        Assert.All(weights.Tensors.Values, info => Assert.Equal(TensorDType.BF16, info.DType));
    }

    [Fact]
    public void Config_json_uses_the_transformers_4_spelling()
    {
        var dir = Make("model", seed: 0);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        var root = json.RootElement;
        Assert.Equal("qwen3_moe", root.GetProperty("model_type").GetString());
        Assert.Equal("Qwen3MoeForCausalLM", root.GetProperty("architectures")[0].GetString());
        Assert.Equal("bfloat16", root.GetProperty("torch_dtype").GetString());
        Assert.Equal(8, root.GetProperty("num_experts").GetInt32());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("rope_scaling").ValueKind);
        Assert.Equal(1_000_000, root.GetProperty("rope_theta").GetDouble());
        Assert.Equal("silu", root.GetProperty("hidden_act").GetString());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("bos_token_id").ValueKind);
        Assert.False(root.TryGetProperty("dtype", out _));
        Assert.False(root.TryGetProperty("num_local_experts", out _));
    }

    [Fact]
    public void Weights_follow_the_initialization_scheme()
    {
        using var checkpoint = Checkpoint.Open(Make("model", seed: 7));
        var embedding = checkpoint.ReadFloat32("model.embed_tokens.weight", 151936, 64);
        AssertDistribution(embedding, mean: 0, standardDeviation: 1);
        var downProjection = checkpoint.ReadFloat32("model.layers.0.mlp.down_proj.weight", 64, 128);
        var residualGain = 1 / Math.Sqrt(2 * 4);
        AssertDistribution(downProjection, mean: 0, standardDeviation: residualGain / Math.Sqrt(128));
        var upProjection = checkpoint.ReadFloat32("model.layers.0.mlp.up_proj.weight", 128, 64);
        AssertDistribution(upProjection, mean: 0, standardDeviation: 1 / Math.Sqrt(64));
        var router = checkpoint.ReadFloat32("model.layers.2.mlp.gate.weight", 8, 64);
        AssertDistribution(router, mean: 0, standardDeviation: 1 / Math.Sqrt(64), tolerance: 0.15);
        var norm = checkpoint.ReadFloat32("model.layers.3.input_layernorm.weight", 64);
        AssertDistribution(norm, mean: 1, standardDeviation: 0.1, tolerance: 0.5);
        Assert.NotEqual(
            checkpoint.ReadFloat32("model.layers.1.mlp.experts.0.up_proj.weight", 32, 64),
            checkpoint.ReadFloat32("model.layers.1.mlp.experts.1.up_proj.weight", 32, 64));
    }

    private static void AssertDistribution(float[] values, double mean, double standardDeviation, double tolerance = 0.05)
    {
        var actualMean = values.Average(v => (double)v);
        var actualDeviation = Math.Sqrt(values.Average(v => (v - actualMean) * (v - actualMean)));
        Assert.InRange(actualMean, mean - (tolerance * standardDeviation), mean + (tolerance * standardDeviation));
        Assert.InRange(actualDeviation, standardDeviation * (1 - tolerance), standardDeviation * (1 + tolerance));
    }

    private static List<(string Name, long[] Shape)> ExpectedTinyTensors()
    {
        var tensors = new List<(string, long[])> { ("model.embed_tokens.weight", [151936, 64]), ("model.norm.weight", [64]) };
        for (var layer = 0; layer < 4; layer++)
        {
            var prefix = $"model.layers.{layer}";
            tensors.Add(($"{prefix}.input_layernorm.weight", [64]));
            tensors.Add(($"{prefix}.post_attention_layernorm.weight", [64]));
            tensors.Add(($"{prefix}.self_attn.q_proj.weight", [64, 64]));
            tensors.Add(($"{prefix}.self_attn.k_proj.weight", [32, 64]));
            tensors.Add(($"{prefix}.self_attn.v_proj.weight", [32, 64]));
            tensors.Add(($"{prefix}.self_attn.o_proj.weight", [64, 64]));
            tensors.Add(($"{prefix}.self_attn.q_norm.weight", [16]));
            tensors.Add(($"{prefix}.self_attn.k_norm.weight", [16]));
            if (layer == 0)
            {
                tensors.Add(($"{prefix}.mlp.gate_proj.weight", [128, 64]));
                tensors.Add(($"{prefix}.mlp.up_proj.weight", [128, 64]));
                tensors.Add(($"{prefix}.mlp.down_proj.weight", [64, 128]));
                continue;
            }
            tensors.Add(($"{prefix}.mlp.gate.weight", [8, 64]));
            for (var expert = 0; expert < 8; expert++)
            {
                tensors.Add(($"{prefix}.mlp.experts.{expert}.gate_proj.weight", [32, 64]));
                tensors.Add(($"{prefix}.mlp.experts.{expert}.up_proj.weight", [32, 64]));
                tensors.Add(($"{prefix}.mlp.experts.{expert}.down_proj.weight", [64, 32]));
            }
        }
        return tensors;
    }

    private string Make(string name, ulong seed)
    {
        var outDir = _dir.File(name);
        ModelMaker.Make(ModelPresets.Get("tiny"), outDir, seed);
        return outDir;
    }

    private static string[] FileNames(string dir) =>
        Directory.GetFiles(dir).Select(path => Path.GetFileName(path)).Order(StringComparer.Ordinal).ToArray();
}
