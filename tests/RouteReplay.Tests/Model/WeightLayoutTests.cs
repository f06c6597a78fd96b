using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;

namespace RouteReplay.Tests.Model;

public sealed class WeightLayoutTests
{
    [Fact]
    public void Untied_embeddings_add_an_lm_head()
    {
        var config = ModelPresets.Get("tiny").Config with { TieWordEmbeddings = false };
        var lmHead = Assert.Single(WeightLayout.Enumerate(config), weight => weight.Name == "lm_head.weight");
        Assert.Equal([151936L, 64], lmHead.Shape);
    }

    [Fact]
    public void Attention_bias_adds_a_bias_per_projection()
    {
        var config = ModelPresets.Get("tiny").Config with { AttentionBias = true, OutputProjectionBias = true };
        var biases = WeightLayout.Enumerate(config)
            .Where(weight => weight.Name.StartsWith("model.layers.0.", StringComparison.Ordinal) && weight.Name.EndsWith(".bias", StringComparison.Ordinal))
            .ToDictionary(weight => weight.Name, weight => weight.Shape);
        Assert.Equal([64L], biases["model.layers.0.self_attn.q_proj.bias"]);
        Assert.Equal([32L], biases["model.layers.0.self_attn.k_proj.bias"]);
        Assert.Equal([32L], biases["model.layers.0.self_attn.v_proj.bias"]);
        Assert.Equal([64L], biases["model.layers.0.self_attn.o_proj.bias"]);
    }

    [Fact]
    public void Qwen2_moe_has_qkv_biases_a_gated_shared_expert_and_mixtral_its_original_names()
    {
        var qwen2 = WeightLayout.Enumerate(ModelPresets.Get("qwen2-moe-tiny").Config).ToDictionary(w => w.Name, w => w.Shape);
        Assert.Contains("model.layers.1.self_attn.q_proj.bias", qwen2.Keys);
        Assert.DoesNotContain("model.layers.1.self_attn.o_proj.bias", qwen2.Keys);
        Assert.DoesNotContain("model.layers.1.self_attn.q_norm.weight", qwen2.Keys);
        Assert.Equal([64L, 64L], qwen2["model.layers.1.mlp.shared_expert.gate_proj.weight"]);
        Assert.Equal([1L, 64L], qwen2["model.layers.1.mlp.shared_expert_gate.weight"]);
        Assert.Equal([128L, 64L], qwen2["model.layers.0.mlp.gate_proj.weight"]);

        var mixtral = WeightLayout.Enumerate(ModelPresets.Get("mixtral-tiny").Config).ToDictionary(w => w.Name, w => w.Shape);
        Assert.Equal([8L, 64L], mixtral["model.layers.0.block_sparse_moe.gate.weight"]);
        Assert.Equal([32L, 64L], mixtral["model.layers.0.block_sparse_moe.experts.7.w1.weight"]);
        Assert.Equal([64L, 32L], mixtral["model.layers.0.block_sparse_moe.experts.7.w2.weight"]);
        Assert.Equal([32L, 64L], mixtral["model.layers.0.block_sparse_moe.experts.7.w3.weight"]);

        var olmoe = WeightLayout.Enumerate(ModelPresets.Get("olmoe-tiny").Config).ToDictionary(w => w.Name, w => w.Shape);
        Assert.Equal([64L], olmoe["model.layers.0.self_attn.q_norm.weight"]);
        Assert.Equal([64L], olmoe["model.layers.0.self_attn.k_norm.weight"]);
    }

    [Fact]
    public void Decoder_sparse_step_decides_which_layers_get_experts()
    {
        var config = ModelPresets.Get("tiny").Config with { MlpOnlyLayers = [], DecoderSparseStep = 2 };
        var routers = WeightLayout.Enumerate(config).Where(weight => weight.Name.EndsWith(".mlp.gate.weight", StringComparison.Ordinal));
        Assert.Equal(["model.layers.1.mlp.gate.weight", "model.layers.3.mlp.gate.weight"], routers.Select(weight => weight.Name));
    }
}
