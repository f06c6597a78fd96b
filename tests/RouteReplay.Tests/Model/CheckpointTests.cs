using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;

namespace RouteReplay.Tests.Model;

public sealed class CheckpointTests : IDisposable
{
    private static readonly float[] First = [1f, 2f, 3f, 4f, 5f, 6f];
    private static readonly float[] Second = [-1.5f, 0.25f];

    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Sharded_checkpoint_with_index_reads_tensors_from_every_shard()
    {
        WriteConfig();
        WriteShard("model-00001-of-00002.safetensors", ("first", First, [2, 3]));
        WriteShard("model-00002-of-00002.safetensors", ("second", Second, [2]));
        WriteIndex(("first", "model-00001-of-00002.safetensors"), ("second", "model-00002-of-00002.safetensors"));

        using var checkpoint = Checkpoint.Open(_dir.Path);
        Assert.Equal(First, checkpoint.ReadFloat32("first", 2, 3));
        Assert.Equal(Second, checkpoint.ReadFloat32("second", 2));
        Assert.True(checkpoint.HasTensor("second"));
        Assert.False(checkpoint.HasTensor("third"));
    }

    [Fact]
    public void Index_decides_which_tensors_exist()
    {
        WriteConfig();
        WriteShard("a.safetensors", ("first", First, [2, 3]), ("unlisted", Second, [2]));
        WriteIndex(("first", "a.safetensors"));

        using var checkpoint = Checkpoint.Open(_dir.Path);
        Assert.True(checkpoint.HasTensor("first"));
        Assert.False(checkpoint.HasTensor("unlisted"));
    }

    [Fact]
    public void Sharded_checkpoint_without_index_reads_every_safetensors_file()
    {
        WriteConfig();
        WriteShard("part-a.safetensors", ("first", First, [2, 3]));
        WriteShard("part-b.safetensors", ("second", Second, [2]));

        using var checkpoint = Checkpoint.Open(_dir.Path);
        Assert.Equal(Second, checkpoint.ReadFloat32("second", 2));
        var destination = new float[6];
        checkpoint.ReadFloat32("first", destination, 2, 3);
        Assert.Equal(First, destination);
    }

    [Fact]
    public void Tensor_in_two_files_without_index_is_an_error()
    {
        WriteConfig();
        WriteShard("part-a.safetensors", ("first", First, [2, 3]));
        WriteShard("part-b.safetensors", ("first", First, [6]));

        var error = Assert.Throws<CheckpointException>(() => Checkpoint.Open(_dir.Path));
        Assert.Equal("first", error.Field);
        Assert.Contains("part-a.safetensors", error.Message);
        Assert.Contains("part-b.safetensors", error.Message);
    }

    [Fact]
    public void Missing_tensor_is_named()
    {
        WriteConfig();
        WriteShard("model.safetensors", ("first", First, [2, 3]));

        using var checkpoint = Checkpoint.Open(_dir.Path);
        var error = Assert.Throws<CheckpointException>(() => checkpoint.ReadFloat32("model.norm.weight", 64));
        Assert.Equal("model.norm.weight", error.Field);
        Assert.Contains($"tensor 'model.norm.weight' not found in {_dir.Path}", error.Message);
    }

    [Fact]
    public void Mis_shaped_tensor_names_the_tensor_the_file_and_both_shapes()
    {
        WriteConfig();
        WriteShard("model.safetensors", ("first", First, [2, 3]));

        using var checkpoint = Checkpoint.Open(_dir.Path);
        var error = Assert.Throws<CheckpointException>(() => checkpoint.ReadFloat32("first", 3, 2));
        Assert.Equal("first", error.Field);
        Assert.Equal(_dir.File("model.safetensors"), error.FileName);
        Assert.Contains("first", error.Message);
        Assert.Contains("model.safetensors", error.Message);
        Assert.Contains("[2, 3]", error.Message);
        Assert.Contains("[3, 2]", error.Message);
        Assert.Throws<CheckpointException>(() => checkpoint.ReadFloat32("first", new float[6], 6));
    }

    [Fact]
    public void Truncated_weight_file_is_named()
    {
        WriteConfig();
        WriteShard("model.safetensors", ("first", First, [2, 3]));
        var path = _dir.File("model.safetensors");
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^4]);

        var error = Assert.Throws<CheckpointException>(() => Checkpoint.Open(_dir.Path));
        Assert.Equal(path, error.FileName);
        Assert.Equal("first", error.Field);
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void Index_pointing_at_a_missing_file_names_it()
    {
        WriteConfig();
        WriteShard("model-00001-of-00002.safetensors", ("first", First, [2, 3]));
        WriteIndex(("first", "model-00001-of-00002.safetensors"), ("second", "model-00002-of-00002.safetensors"));

        var error = Assert.Throws<CheckpointException>(() => Checkpoint.Open(_dir.Path));
        Assert.Equal(_dir.File("model-00002-of-00002.safetensors"), error.FileName);
        Assert.Contains("model-00002-of-00002.safetensors", error.Message);
        Assert.Equal("second", error.Field);
    }

    [Fact]
    public void Index_mapping_a_tensor_to_a_file_without_it_names_both()
    {
        WriteConfig();
        WriteShard("a.safetensors", ("first", First, [2, 3]));
        WriteIndex(("first", "a.safetensors"), ("second", "a.safetensors"));

        var error = Assert.Throws<CheckpointException>(() => Checkpoint.Open(_dir.Path));
        Assert.Equal("second", error.Field);
        Assert.Contains("a.safetensors", error.Message);
    }

    [Fact]
    public void Index_without_weight_map_names_the_field()
    {
        WriteConfig();
        WriteShard("a.safetensors", ("first", First, [2, 3]));
        File.WriteAllText(_dir.File("model.safetensors.index.json"), """{"metadata": {}}""");

        var error = Assert.Throws<CheckpointException>(() => Checkpoint.Open(_dir.Path));
        Assert.Equal("weight_map", error.Field);
        Assert.Contains("model.safetensors.index.json", error.Message);
    }

    [Fact]
    public void Missing_config_names_config_json()
    {
        WriteShard("model.safetensors", ("first", First, [2, 3]));
        var error = Assert.Throws<CheckpointException>(() => Checkpoint.Open(_dir.Path));
        Assert.Equal(_dir.File("config.json"), error.FileName);
        Assert.Contains("config.json", error.Message);
    }

    [Fact]
    public void Folder_without_weights_is_named()
    {
        WriteConfig();
        var error = Assert.Throws<CheckpointException>(() => Checkpoint.Open(_dir.Path));
        Assert.Equal(_dir.Path, error.FileName);
        Assert.Contains("safetensors", error.Message);
    }

    [Fact]
    public void Eos_ids_come_from_the_generation_config_when_it_lists_them()
    {
        WriteConfig();
        WriteShard("model.safetensors", ("first", First, [2, 3]));
        using (var checkpoint = Checkpoint.Open(_dir.Path))
        {
            Assert.Null(checkpoint.Generation);
            Assert.Equal(ModelPresets.Get("tiny").Config, checkpoint.Config);
            Assert.Equal([151645, 151643], checkpoint.EosTokenIds);
        }
        File.WriteAllText(_dir.File("generation_config.json"), """{"eos_token_id": [7, 8]}""");
        using (var checkpoint = Checkpoint.Open(_dir.Path))
        {
            Assert.Equal(new GenerationConfig([7, 8]), checkpoint.Generation);
            Assert.Equal([7, 8], checkpoint.EosTokenIds);
        }
    }

    private void WriteConfig() => ModelConfigWriter.Write(ModelPresets.Get("tiny").Config, _dir.File("config.json"));

    private void WriteShard(string fileName, params (string Name, float[] Values, long[] Shape)[] tensors) =>
        SafetensorsWriter.Write(
            _dir.File(fileName),
            tensors.Select(t => new TensorToWrite(t.Name, TensorDType.F32, t.Shape, MemoryMarshal.AsBytes(t.Values.AsSpan()).ToArray()))
                .ToArray());

    private void WriteIndex(params (string Tensor, string File)[] entries)
    {
        var weightMap = new JsonObject();
        foreach (var (tensor, file) in entries)
        {
            weightMap[tensor] = file;
        }
        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = 32 }, ["weight_map"] = weightMap };
        File.WriteAllText(_dir.File("model.safetensors.index.json"), index.ToJsonString());
    }
}
