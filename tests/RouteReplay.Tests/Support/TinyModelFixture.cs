using RouteReplay.Backends.Cpu;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.Tests.Support;

/// <summary>
/// The tiny preset in a temporary folder of its own, shared by a test class. The preset is made once per test process
/// (its weights are seeded, so every making writes the same files) and copied into each fixture's folder; its
/// tokenizer, safe to share between threads, is loaded once from those files.
/// </summary>
public sealed class TinyModelFixture : IDisposable
{
    private static readonly Lazy<(string Directory, TextTokenizer Tokenizer)> Made = new(() =>
    {
        var directory = Path.Combine(Path.GetTempPath(), $"routereplay-tiny-made-{Guid.NewGuid():N}");
        ModelMaker.Make(ModelPresets.Get("tiny"), directory);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => System.IO.Directory.Delete(directory, recursive: true);
        return (directory, TextTokenizer.Load(directory));
    });

    public TinyModelFixture()
    {
        var (made, tokenizer) = Made.Value;
        Directory = Path.Combine(Path.GetTempPath(), $"routereplay-tiny-{Guid.NewGuid():N}");
        foreach (var file in System.IO.Directory.GetFiles(made, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(Directory, Path.GetRelativePath(made, file));
            System.IO.Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        using var checkpoint = Checkpoint.Open(Directory);
        Config = checkpoint.Config;
        Tokenizer = tokenizer;
    }

    public string Directory { get; }

    public ModelConfig Config { get; }

    public TextTokenizer Tokenizer { get; }

    public CpuBackend CreateBackend(int numBlocks = 64, int blockSize = 16)
    {
        using var checkpoint = Checkpoint.Open(Directory);
        return CpuBackend.Load(checkpoint, numBlocks, blockSize);
    }

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
}
