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
        var config = ModelPresets.Get("tiny").Config with { AttentionBias = true };
        var biases = WeightLayout.Enumerate(config)
            .Where(weight => weight.Name.StartsWith("model.layers.0.", StringComparison.Ordinal) && weight.Name.EndsWith(".bias", StringComparison.Ordinal))
            .ToDictionary(weight => weight.Name, weight => weight.Shape);
        Assert.Equal([64L], biases["model.layers.0.self_attn.q_proj.bias"]);
        Assert.Equal([32L], biases["model.layers.0.self_attn.k_proj.bias"]);
        Assert.Equal([32L], biases["model.layers.0.self_attn.v_proj.bias"]);
        Assert.Equal([64L], biases["model.layers.0.self_attn.o_proj.bias"]);
    }

    [Fact]
    public void Decoder_sparse_step_decides_which_layers_get_experts()
    {
        var config = ModelPresets.Get("tiny").Config with { MlpOnlyLayers = [], DecoderSparseStep = 2 };
        var routers = WeightLayout.Enumerate(config).Where(weight => weight.Name.EndsWith(".mlp.gate.weight", StringComparison.Ordinal));
        Assert.Equal(["model.layers.1.mlp.gate.weight", "model.layers.3.mlp.gate.weight"], routers.Select(weight => weight.Name));
    }
}
