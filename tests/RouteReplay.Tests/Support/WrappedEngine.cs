using RouteReplay.Backends;
using RouteReplay.Backends.Cpu;
using RouteReplay.Cache;
using RouteReplay.Engine;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.Tests.Support;

/// <summary>Loads a checkpoint as <see cref="LoadedModel.LoadCpu"/> does, with the CPU backend wrapped by a test backend.</summary>
public static class WrappedEngine
{
    public static LlmEngine Load(string modelDir, EngineOptions options, Func<IModelBackend, IModelBackend> wrap)
    {
        var resolved = options.Validate();
        using var checkpoint = Checkpoint.Open(modelDir);
        var tokenizer = TextTokenizer.Load(modelDir);
        var eos = checkpoint.EosTokenIds.Concat(tokenizer.EosTokenIds).Distinct().ToArray();
        var backend = wrap(CpuBackend.Load(checkpoint, resolved.ResolvedNumBlocks, resolved.BlockSize));
        return new LlmEngine(backend, tokenizer, eos, resolved, ModelFingerprint.Compute(checkpoint.Config, resolved.WeightsVersion ?? "test"));
    }
}
