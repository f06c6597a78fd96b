using RouteReplay.Backends.Cpu;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.Tests.Support;

/// <summary>The tiny preset made once into a temporary folder and shared by a test class.</summary>
public sealed class TinyModelFixture : IDisposable
{
    public TinyModelFixture()
    {
        Directory = Path.Combine(Path.GetTempPath(), $"routereplay-tiny-{Guid.NewGuid():N}");
        ModelMaker.Make(ModelPresets.Get("tiny"), Directory);
        using var checkpoint = Checkpoint.Open(Directory);
        Config = checkpoint.Config;
        Tokenizer = TextTokenizer.Load(Directory);
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
