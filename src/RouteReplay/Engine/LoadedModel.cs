using RouteReplay.Backends;
using RouteReplay.Backends.Cpu;
using RouteReplay.Model;

namespace RouteReplay.Engine;

/// <summary>A checkpoint folder made ready to run: its config, tokenizer, end-of-sequence ids and a backend.</summary>
public sealed class LoadedModel : IDisposable
{
    private LoadedModel(string directory, ModelConfig config, TextTokenizer tokenizer, IReadOnlyList<int> eosTokenIds, IModelBackend backend)
    {
        Directory = directory;
        Config = config;
        Tokenizer = tokenizer;
        EosTokenIds = eosTokenIds;
        Backend = backend;
    }

    public string Directory { get; }

    public ModelConfig Config { get; }

    public TextTokenizer Tokenizer { get; }

    /// <summary>The generation config's end-of-sequence ids (else the model config's) and the tokenizer's.</summary>
    public IReadOnlyList<int> EosTokenIds { get; }

    public IModelBackend Backend { get; }

    /// <summary>Loads the checkpoint in <paramref name="directory"/> onto the CPU backend with a KV cache of the given size.</summary>
    public static LoadedModel LoadCpu(string directory, int numBlocks, int blockSize)
    {
        using var checkpoint = Checkpoint.Open(directory);
        var tokenizer = TextTokenizer.Load(directory);
        var eos = checkpoint.EosTokenIds.Concat(tokenizer.EosTokenIds).Distinct().ToArray();
        var backend = CpuBackend.Load(checkpoint, numBlocks, blockSize);
        return new LoadedModel(directory, checkpoint.Config, tokenizer, eos, backend);
    }

    public void Dispose() => Backend.Dispose();
}
