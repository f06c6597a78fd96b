using RouteReplay.Backends;
using RouteReplay.Backends.Cuda;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;

namespace RouteReplay.Tests.Backends.Cuda;

/// <summary>
/// Shared tensors are checked against the served model's layout (per-expert or fused names, shapes, no name twice);
/// a complete set is told from a part of the model, and only a complete set under a version keeps that version as its
/// fingerprint identity.
/// </summary>
public sealed class IpcWeightsTests
{
    private static readonly ModelConfig Config = ModelPresets.Get("small").Config;

    private static IpcTensor Shared(string name, long[] shape, long offset = 0) => new(name, shape, new byte[IpcTensor.HandleBytes], offset);

    private static List<IpcTensor> EveryTensor(ModelConfig config) =>
        [.. WeightLayout.Enumerate(config).Select((w, i) => Shared(w.Name, w.Shape, i * 256L))];

    private static (DeviceTensorKind, int, long, long) Place(DeviceTensor tensor) => (tensor.Kind, tensor.Layer, tensor.ElementOffset, tensor.Elements);

    [Fact]
    public void Every_tensor_of_the_checkpoint_layout_is_a_complete_set_placed_like_the_disk_loader_places_it()
    {
        var tensors = EveryTensor(Config);

        var weights = IpcWeights.Plan(Config, tensors);

        Assert.True(weights.IsComplete);
        Assert.Equal(tensors.Count, weights.Copies.Count);
        var disk = DeviceTensorMap.Tensors(Config, _ => false).ToDictionary(t => t.Name);
        Assert.All(weights.Copies, copy => Assert.Equal(Place(disk[copy.Source.Name]), Place(copy.Target)));
        Assert.Equal(WeightLayout.Enumerate(Config).Sum(w => TensorShapes.ElementCount(w.Shape) * 2), weights.Bytes);
    }

    [Fact]
    public void Fused_experts_replace_the_per_expert_tensors_of_their_layer()
    {
        long e = Config.NumExperts, i = Config.MoeIntermediateSize, h = Config.HiddenSize;
        var layer = Enumerable.Range(0, Config.NumHiddenLayers).First(Config.IsMoeLayer);
        var perExpert = $"model.layers.{layer}.mlp.experts.";
        var tensors = EveryTensor(Config).Where(t => !t.Name.StartsWith(perExpert, StringComparison.Ordinal)).ToList();
        tensors.Add(Shared($"model.layers.{layer}.mlp.experts.gate_up_proj", [e, 2 * i, h]));
        tensors.Add(Shared($"model.layers.{layer}.mlp.experts.down_proj", [e, h, i]));

        var weights = IpcWeights.Plan(Config, tensors);

        Assert.True(weights.IsComplete);
        var gateUp = weights.Copies.Single(c => c.Source.Name.EndsWith(".gate_up_proj", StringComparison.Ordinal)).Target;
        Assert.Equal((DeviceTensorKind.GateUp, layer, 0L, e * 2 * i * h), (gateUp.Kind, gateUp.Layer, gateUp.ElementOffset, gateUp.Elements));
    }

    [Fact]
    public void A_part_of_the_model_is_not_complete_and_gets_a_fresh_identity_every_time_even_under_one_version()
    {
        var part = IpcWeights.Plan(Config, EveryTensor(Config).Where(t => t.Name.StartsWith("model.layers.0.", StringComparison.Ordinal)).ToList());
        var complete = IpcWeights.Plan(Config, EveryTensor(Config));

        Assert.False(part.IsComplete);
        Assert.Equal("step-7", complete.WeightsIdentity("step-7"));
        var first = part.WeightsIdentity("step-7");
        var second = part.WeightsIdentity("step-7");
        Assert.StartsWith("step-7+", first, StringComparison.Ordinal);
        Assert.NotEqual(first, second);
        Assert.NotEqual(complete.WeightsIdentity(null), complete.WeightsIdentity(null));
        Assert.StartsWith("ipc+", complete.WeightsIdentity(null), StringComparison.Ordinal);
    }

    [Fact]
    public void An_unknown_name_is_refused_naming_its_field_and_the_name()
    {
        List<IpcTensor> tensors = [.. EveryTensor(Config).Take(3), Shared("model.layers.0.self_attn.qkv_proj.weight", [1, 1])];

        var error = Assert.Throws<ArgumentException>(() => IpcWeights.Plan(Config, tensors));

        Assert.Equal("tensors[3].name", error.ParamName);
        Assert.Contains("'model.layers.0.self_attn.qkv_proj.weight'", error.Message);
    }

    [Fact]
    public void A_shape_other_than_the_served_models_is_refused_naming_the_tensor()
    {
        var q = WeightLayout.Enumerate(Config).First(w => w.Name == "model.layers.1.self_attn.q_proj.weight");
        List<IpcTensor> tensors = [Shared(q.Name, [q.Shape[0], q.Shape[1] + 1])];

        var error = Assert.Throws<ArgumentException>(() => IpcWeights.Plan(Config, tensors));

        Assert.Equal("tensors[0].shape", error.ParamName);
        Assert.Contains(q.Name, error.Message);
        Assert.Contains($"[{q.Shape[0]}, {q.Shape[1]}]", error.Message);
    }

    [Fact]
    public void A_name_sent_twice_is_refused_naming_both_places()
    {
        var norm = WeightLayout.Enumerate(Config).First(w => w.Name == "model.norm.weight");
        List<IpcTensor> tensors = [Shared(norm.Name, norm.Shape), Shared("model.embed_tokens.weight", [Config.VocabSize, Config.HiddenSize]), Shared(norm.Name, norm.Shape)];

        var error = Assert.Throws<ArgumentException>(() => IpcWeights.Plan(Config, tensors));

        Assert.Equal("tensors[2].name", error.ParamName);
        Assert.Contains("tensors[0]", error.Message);
    }

    [Fact]
    public void A_tied_models_lm_head_is_accepted_and_not_copied()
    {
        var tied = ModelPresets.Get("tiny").Config;
        Assert.True(tied.TieWordEmbeddings);
        List<IpcTensor> tensors = [.. EveryTensor(tied), Shared("lm_head.weight", [tied.VocabSize, tied.HiddenSize])];

        var weights = IpcWeights.Plan(tied, tensors);

        Assert.True(weights.IsComplete);
        Assert.DoesNotContain(weights.Copies, c => c.Source.Name == "lm_head.weight");
    }
}
