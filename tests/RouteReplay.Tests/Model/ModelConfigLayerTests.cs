using System.Text.Json.Nodes;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Tests.Model;

public sealed class ModelConfigLayerTests
{
    [Fact]
    public void Every_layer_is_moe_by_default()
    {
        var config = ModelConfig.Parse(ConfigJson.Transformers4, "config.json");
        Assert.Equal(Enumerable.Range(0, 48), config.MoeLayers);
    }

    [Fact]
    public void Mlp_only_layers_are_dense()
    {
        var config = Parse(layers: 4, sparseStep: 1, mlpOnly: [0, 2]);
        Assert.Equal([false, true, false, true], Enumerable.Range(0, 4).Select(config.IsMoeLayer));
        Assert.Equal([1, 3], config.MoeLayers);
    }

    [Fact]
    public void Decoder_sparse_step_2_makes_every_second_layer_moe()
    {
        var config = Parse(layers: 6, sparseStep: 2, mlpOnly: []);
        Assert.Equal([1, 3, 5], config.MoeLayers);
    }

    [Fact]
    public void Sparse_step_and_mlp_only_layers_combine()
    {
        var config = Parse(layers: 6, sparseStep: 2, mlpOnly: [3]);
        Assert.Equal([1, 5], config.MoeLayers);
        Assert.False(config.IsMoeLayer(3));
        Assert.False(config.IsMoeLayer(0));
    }

    [Fact]
    public void No_experts_means_no_moe_layers()
    {
        var json = ConfigJson.Edit(ConfigJson.Transformers4, root => root["num_experts"] = 0);
        Assert.Empty(ModelConfig.Parse(json, "config.json").MoeLayers);
    }

    private static ModelConfig Parse(int layers, int sparseStep, int[] mlpOnly)
    {
        var json = ConfigJson.Edit(ConfigJson.Transformers4, root =>
        {
            root["num_hidden_layers"] = layers;
            root["decoder_sparse_step"] = sparseStep;
            root["mlp_only_layers"] = new JsonArray(mlpOnly.Select(layer => (JsonNode?)layer).ToArray());
        });
        return ModelConfig.Parse(json, "config.json");
    }
}
