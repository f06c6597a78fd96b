using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Tests.Model;

public sealed class SafetensorsMalformedFileTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Header_length_past_the_end_of_the_file()
    {
        var header = RawSafetensors.Header("x", "F32", "[1]", 0, 4);
        var error = OpenBroken(RawSafetensors.Build(header, 4, headerLengthField: 1_000_000));
        Assert.Contains("1000000", error.Message);
    }

    [Fact]
    public void File_shorter_than_the_header_length_field()
    {
        OpenBroken([1, 2, 3]);
    }

    [Fact]
    public void Header_that_is_not_json()
    {
        var error = OpenBroken(RawSafetensors.Build("{\"x\": {dtype", 0));
        Assert.Contains("JSON", error.Message);
    }

    [Fact]
    public void Header_that_is_not_an_object()
    {
        var error = OpenBroken(RawSafetensors.Build("[1, 2, 3]", 0));
        Assert.Contains("object", error.Message);
    }

    [Theory]
    [InlineData("I64", 8)]
    [InlineData("F64", 8)]
    [InlineData("Q4", 1)]
    public void Unsupported_dtype_names_the_tensor_and_the_dtype(string dtype, int size)
    {
        var error = OpenBroken(RawSafetensors.Build(RawSafetensors.Header("model.tokens", dtype, "[2]", 0, 2 * size), 2 * size));
        Assert.Equal("model.tokens", error.Field);
        Assert.Contains("model.tokens", error.Message);
        Assert.Contains(dtype, error.Message);
    }

    [Fact]
    public void Offsets_past_the_data_section_of_a_truncated_file()
    {
        var error = OpenBroken(RawSafetensors.Build(RawSafetensors.Header("w", "BF16", "[4, 4]", 0, 32), 20));
        Assert.Equal("w", error.Field);
        Assert.Contains("truncated", error.Message);
    }

    [Fact]
    public void Offsets_that_disagree_with_shape_and_dtype()
    {
        var error = OpenBroken(RawSafetensors.Build(RawSafetensors.Header("w", "F32", "[2, 3]", 0, 12), 24));
        Assert.Equal("w", error.Field);
        Assert.Contains("[2, 3]", error.Message);
        Assert.Contains("24", error.Message);
    }

    [Theory]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}""")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}""")]
    [InlineData("""{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""")]
    [InlineData("""{"w":{"shape":[1],"data_offsets":[0,4]}}""")]
    [InlineData("""{"w":{"dtype":"F32","shape":"1","data_offsets":[0,4]}}""")]
    [InlineData("""{"w":[1]}""")]
    public void Malformed_entries_name_the_tensor(string header)
    {
        var error = OpenBroken(RawSafetensors.Build(header, 8));
        Assert.Equal("w", error.Field);
    }

    [Fact]
    public void Missing_file_names_the_file()
    {
        var path = _dir.File("absent.safetensors");
        var error = Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path));
        Assert.Equal(path, error.FileName);
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void Metadata_entry_is_ignored_and_out_of_order_offsets_are_accepted()
    {
        const string header = """
            {"__metadata__":{"format":"pt"},
             "b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
             "a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}
            """;
        var path = _dir.File("ok.safetensors");
        File.WriteAllBytes(path, RawSafetensors.Build(header, 8));
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(["a", "b"], file.Tensors.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(4, file.Tensors["a"].DataOffset);
    }

    private CheckpointException OpenBroken(byte[] bytes)
    {
        var path = _dir.File($"broken-{Guid.NewGuid():N}.safetensors");
        File.WriteAllBytes(path, bytes);
        var error = Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path));
        Assert.Equal(path, error.FileName);
        Assert.Contains(path, error.Message);
        return error;
    }
}
