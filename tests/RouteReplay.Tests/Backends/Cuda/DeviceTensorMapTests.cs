using RouteReplay.Backends.Cuda;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;

namespace RouteReplay.Tests.Backends.Cuda;

/// <summary>The device layout covers exactly the tensors make-model writes, and packs experts without gaps or overlaps.</summary>
public sealed class DeviceTensorMapTests
{
    [Theory]
    [InlineData("tiny")]
    [InlineData("small")]
    [InlineData("qwen3-30b-a3b")]
    public void Every_tensor_of_the_layout_has_a_place_and_nothing_else_does(string preset)
    {
        var config = ModelPresets.Get(preset).Config;
        var mapped = DeviceTensorMap.Tensors(config, _ => false).ToDictionary(t => t.Name);
        var layout = WeightLayout.Enumerate(config).ToDictionary(w => w.Name);
        Assert.Equal(layout.Keys.Order(), mapped.Keys.Order());
        Assert.All(layout.Values, w => Assert.Equal(w.Shape, mapped[w.Name].Shape));
    }

    [Fact]
    public void Experts_pack_gate_rows_then_up_rows_per_expert_and_tile_the_device_tensors()
    {
        var config = ModelPresets.Get("small").Config;
        long h = config.HiddenSize, i = config.MoeIntermediateSize, e = config.NumExperts;
        var layer = DeviceTensorMap.Tensors(config, _ => false).Where(t => t.Layer == 3).ToArray();
        var gateUp = layer.Where(t => t.Kind == DeviceTensorKind.GateUp).OrderBy(t => t.ElementOffset).ToArray();
        Assert.Equal(2 * e, gateUp.Length);
        Assert.Equal("model.layers.3.mlp.experts.5.gate_proj.weight", gateUp[10].Name);
        Assert.Equal(5 * 2 * i * h, gateUp[10].ElementOffset);
        Assert.Equal("model.layers.3.mlp.experts.5.up_proj.weight", gateUp[11].Name);
        Assert.Equal(((5 * 2) + 1) * i * h, gateUp[11].ElementOffset);
        for (var x = 1; x < gateUp.Length; x++)
        {
            Assert.Equal(gateUp[x - 1].ElementOffset + gateUp[x - 1].Elements, gateUp[x].ElementOffset);
        }
        var down = layer.Where(t => t.Kind == DeviceTensorKind.Down).ToArray();
        Assert.Equal(e * h * i, down.Sum(t => t.Elements));
        Assert.Equal(e, down.Select(t => t.ElementOffset).Distinct().Count());
    }

    [Fact]
    public void Fused_expert_tensors_are_read_whole_when_the_checkpoint_has_them()
    {
        var config = ModelPresets.Get("tiny").Config;
        var tensors = DeviceTensorMap.Tensors(config, name => name.EndsWith("experts.gate_up_proj", StringComparison.Ordinal)).ToArray();
        var fused = tensors.Where(t => t.Layer == 1 && t.Kind is DeviceTensorKind.GateUp or DeviceTensorKind.Down).ToArray();
        Assert.Equal(["model.layers.1.mlp.experts.gate_up_proj", "model.layers.1.mlp.experts.down_proj"], fused.Select(t => t.Name));
        Assert.Equal([config.NumExperts, 2L * config.MoeIntermediateSize, config.HiddenSize], fused[0].Shape);
        Assert.DoesNotContain(tensors, t => t.Layer == 0 && t.Kind == DeviceTensorKind.GateUp);
    }
}
