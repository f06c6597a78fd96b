using RouteReplay.Cache;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Tokenization;
using RouteReplay.Tests.Cli;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Model;

/// <summary>
/// A named pipe in the place of a model folder's file is refused at once with an error naming the file, by the
/// checkpoint loader, the tokenizer, the weights hash and the CLI's <c>--model</c>, instead of blocking until a writer comes.
/// </summary>
public sealed class NonRegularFileTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>, IDisposable
{
    private readonly TempDirectory _work = new();

    public void Dispose() => _work.Dispose();

    /// <summary>A copy of the tiny model with <paramref name="file"/> replaced by a named pipe.</summary>
    private string CopyWithFifo(string file)
    {
        var folder = _work.File("model");
        Directory.CreateDirectory(folder);
        foreach (var source in Directory.GetFiles(model.Directory))
        {
            File.Copy(source, Path.Combine(folder, Path.GetFileName(source)));
        }
        Fifo.Replace(Path.Combine(folder, file));
        return folder;
    }

    public static TheoryData<string, string> Cases => new()
    {
        { "checkpoint", Checkpoint.ConfigFileName },
        { "checkpoint", GenerationConfig.FileName },
        { "checkpoint", "model.safetensors" },
        { "tokenizer", "tokenizer.json" },
        { "tokenizer", "tokenizer_config.json" },
        { "weights hash", "model.safetensors" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Loading_refuses_a_named_pipe_naming_the_file(string reader, string file)
    {
        var folder = CopyWithFifo(file);
        Action load = reader switch
        {
            "checkpoint" => () => Checkpoint.Open(folder).Dispose(),
            "tokenizer" => () => TextTokenizer.Load(folder),
            _ => () => ModelFingerprint.HashWeights(folder),
        };
        // A thread of its own: on a loaded machine the thread pool may be slow to start a work item, and the wait below
        // must measure the load, not the queue.
        var loading = Task.Factory.StartNew(load, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        try
        {
            var error = await Assert.ThrowsAnyAsync<Exception>(() => loading.WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.IsNotType<TimeoutException>(error);
            Assert.Contains(Path.Combine(folder, file), error.Message);
            Assert.Contains("FIFO", error.Message);
        }
        finally
        {
            Fifo.ReleaseReaders(Path.Combine(folder, file));
        }
    }

    [Fact]
    public async Task The_cli_refuses_a_model_whose_config_is_a_named_pipe_with_one_line_naming_it()
    {
        var folder = CopyWithFifo(Checkpoint.ConfigFileName);
        var running = Task.Run(() => GenerateCliTests.RunCli(_work.Path, "generate", "--model", folder, "--prompt", "x", "--max-tokens", "1"));
        try
        {
            var (exit, stdout, stderr) = await running.WaitAsync(TimeSpan.FromMinutes(2));
            Assert.True(exit != 0, $"routereplay generate succeeded: {stdout}");
            var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("error: ", StringComparison.Ordinal));
            Assert.Contains(Path.Combine(folder, Checkpoint.ConfigFileName), line);
            Assert.Contains("FIFO", line);
            Assert.DoesNotContain("   at ", stderr);
        }
        finally
        {
            Fifo.ReleaseReaders(Path.Combine(folder, Checkpoint.ConfigFileName));
        }
    }
}
