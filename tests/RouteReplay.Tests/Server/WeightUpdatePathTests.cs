using System.Text.Json;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>
/// <c>/update_weights_from_disk</c> with a path that names no checkpoint answers 400 naming <c>model_path</c>, at once;
/// a relative path is resolved against the server's working directory and echoed as the client wrote it, never as an
/// absolute path of the server.
/// </summary>
public sealed class WeightUpdatePathTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>, IAsyncLifetime
{
    private readonly string _relative = $"routereplay-relative-{Guid.NewGuid():N}";
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(model.Directory);

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        if (Directory.Exists(_relative))
        {
            Directory.Delete(_relative, recursive: true);
        }
    }

    private Task<(int Status, JsonElement Body)> UpdateAsync(string modelPath) =>
        _server.PostAsync("/update_weights_from_disk", $$"""{"model_path": {{JsonSerializer.Serialize(modelPath)}}}""");

    private string CopyOfModel(string folder)
    {
        Directory.CreateDirectory(folder);
        foreach (var file in Directory.GetFiles(model.Directory))
        {
            File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        }
        return folder;
    }

    private static string Message(JsonElement body) => body.GetProperty("error").GetProperty("message").GetString()!;

    [Theory]
    [InlineData("")]
    [InlineData("/tmp/a\u0000b")]
    public async Task An_empty_path_or_one_with_a_nul_is_a_400_naming_model_path(string modelPath)
    {
        var (status, body) = await UpdateAsync(modelPath);

        Assert.Equal(400, status);
        Assert.Equal("model_path", body.GetProperty("error").GetProperty("param").GetString());
        Assert.Contains("'model_path'", Message(body));
        Assert.Equal(200, (await _server.PostAsync("/generate", """{"text": "still serving", "sampling_params": {"max_new_tokens": 1}}""")).Status);
    }

    [Fact]
    public async Task A_named_pipe_as_config_json_is_a_400_naming_the_file_not_a_hang()
    {
        var folder = CopyOfModel(Path.Combine(Path.GetTempPath(), _relative));
        var config = Path.Combine(folder, Checkpoint.ConfigFileName);
        Fifo.Replace(config);
        try
        {
            var (status, body) = await UpdateAsync(folder).WaitAsync(TimeSpan.FromMinutes(1));

            Assert.Equal(400, status);
            Assert.Equal("model_path", body.GetProperty("error").GetProperty("param").GetString());
            Assert.Contains(config, Message(body));
            Assert.Contains("FIFO", Message(body));
        }
        finally
        {
            Fifo.ReleaseReaders(config);
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public async Task A_relative_path_loads_and_is_reported_and_echoed_as_the_client_wrote_it()
    {
        var good = Path.Combine(_relative, "good");
        CopyOfModel(good);
        var broken = Path.Combine(_relative, "broken");
        CopyOfModel(broken);
        File.WriteAllText(Path.Combine(broken, Checkpoint.ConfigFileName), "{not json");
        var workingDirectory = Environment.CurrentDirectory;

        var (status, body) = await UpdateAsync(broken);
        Assert.Equal(400, status);
        Assert.Contains(Path.Combine(broken, Checkpoint.ConfigFileName), Message(body));
        Assert.DoesNotContain(workingDirectory, Message(body));

        Assert.Equal(200, (await UpdateAsync(good)).Status);
        var info = await _server.GetAsync("/get_model_info");
        Assert.Equal(good, info.Body.GetProperty("model_path").GetString());
        var models = await _server.GetAsync("/v1/models");
        Assert.Equal(good, models.Body.GetProperty("data")[0].GetProperty("root").GetString());
    }
}
