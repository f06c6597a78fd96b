using RouteReplay.Backends;
using RouteReplay.Backends.Cpu;
using RouteReplay.Cache;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.Engine;

/// <summary>Loads a checkpoint folder into a ready engine: config, tokenizer, end-of-sequence ids, backend, fingerprint.</summary>
public static class LoadedModel
{
    /// <summary>
    /// Loads <paramref name="directory"/> onto the CPU backend. The end-of-sequence ids are the generation config's
    /// (else the model config's) and the tokenizer's. Block keys are seeded with the model fingerprint, which covers
    /// the architecture, the shapes, the payload layout and the weights (their bytes' hash, or <see cref="EngineOptions.WeightsVersion"/>).
    /// </summary>
    public static LlmEngine LoadCpu(string directory, EngineOptions options, IEnumerable<BlockChannel>? auxiliaryChannels = null, Storage.IBlockStore? blockStore = null) =>
        Load(directory, options, (checkpoint, resolved) => CpuBackend.Load(checkpoint, resolved.ResolvedNumBlocks, resolved.BlockSize), auxiliaryChannels, blockStore);

    /// <summary>
    /// Loads <paramref name="directory"/> like <see cref="LoadCpu"/>, onto the backend <paramref name="createBackend"/>
    /// makes from the open checkpoint and the validated options (its KV cache must have the options' block count and size).
    /// </summary>
    public static LlmEngine Load(string directory, EngineOptions options, Func<Checkpoint, EngineOptions, IModelBackend> createBackend, IEnumerable<BlockChannel>? auxiliaryChannels = null, Storage.IBlockStore? blockStore = null)
    {
        options.Validate();
        using var checkpoint = Checkpoint.Open(directory);
        var tokenizer = TextTokenizer.Load(directory);
        var eos = checkpoint.EosTokenIds.Concat(tokenizer.EosTokenIds).Distinct().ToArray();
        var weightsIdentity = options.WeightsVersion ?? ModelFingerprint.HashWeights(directory);
        var backend = createBackend(checkpoint, options);
        return new LlmEngine(backend, tokenizer, eos, options, weightsIdentity, auxiliaryChannels, blockStore);
    }
}
