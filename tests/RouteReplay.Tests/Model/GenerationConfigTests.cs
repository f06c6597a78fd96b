using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Tests.Model;

public sealed class GenerationConfigTests
{
    [Fact]
    public void Absent_file_gives_null()
    {
        using var dir = new TempDirectory();
        Assert.Null(GenerationConfig.Load(dir.Path));
    }

    [Theory]
    [InlineData("""{"eos_token_id": 151645}""", new[] { 151645 })]
    [InlineData("""{"eos_token_id": [151645, 151643], "do_sample": true}""", new[] { 151645, 151643 })]
    [InlineData("""{"temperature": 0.7}""", new int[0])]
    public void Eos_token_id_may_be_an_integer_or_a_list(string json, int[] expected)
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("generation_config.json"), json);
        Assert.Equal(expected, GenerationConfig.Load(dir.Path)!.EosTokenIds);
    }

    [Fact]
    public void Malformed_file_names_the_file_and_field()
    {
        using var dir = new TempDirectory();
        var path = dir.File("generation_config.json");
        File.WriteAllText(path, """{"eos_token_id": "none"}""");
        var error = Assert.Throws<CheckpointException>(() => GenerationConfig.Load(dir.Path));
        Assert.Equal(path, error.FileName);
        Assert.Equal("eos_token_id", error.Field);
    }
}
