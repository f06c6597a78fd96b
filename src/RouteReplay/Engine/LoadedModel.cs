using RouteReplay.Backends;
using RouteReplay.Backends.Cpu;
using RouteReplay.Backends.Cuda;
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

    /// <summary>Loads <paramref name="directory"/> like <see cref="LoadCpu"/>, onto the backend <see cref="EngineOptions.Device"/> names.</summary>
    /// <exception cref="CudaUnavailableException">The CUDA backend was asked for and cannot run here.</exception>
    public static LlmEngine Load(string directory, EngineOptions options, IEnumerable<BlockChannel>? auxiliaryChannels = null, Storage.IBlockStore? blockStore = null) =>
        Load(directory, options, CreateBackend, auxiliaryChannels, blockStore);

    /// <summary>
    /// Loads <paramref name="directory"/> like <see cref="LoadCpu"/>, onto the backend <paramref name="createBackend"/>
    /// makes from the open checkpoint and the validated options (the engine's pool takes its KV cache's block count).
    /// </summary>
    public static LlmEngine Load(string directory, EngineOptions options, Func<Checkpoint, EngineOptions, IModelBackend> createBackend, IEnumerable<BlockChannel>? auxiliaryChannels = null, Storage.IBlockStore? blockStore = null)
    {
        options.Validate();
        using var checkpoint = Checkpoint.Open(directory);
        var tokenizer = TextTokenizer.Load(directory);
        var eos = checkpoint.EosTokenIds.Concat(tokenizer.EosTokenIds).Distinct().ToArray();
        var weightsIdentity = options.WeightsVersion ?? ModelFingerprint.HashWeights(directory);
        return Create(createBackend(checkpoint, options), tokenizer, eos, options, weightsIdentity, auxiliaryChannels, blockStore);
    }

    /// <summary>
    /// An engine over random weights made on the GPU (no files): <paramref name="config"/>'s architecture, the Qwen3
    /// tokenizer from the assets, and block keys seeded with the config and the weights seed (or
    /// <see cref="EngineOptions.WeightsVersion"/>).
    /// </summary>
    /// <exception cref="ArgumentException">The device is not CUDA (parameter <c>load-format</c>).</exception>
    public static LlmEngine LoadDummy(ModelConfig config, ulong seed, EngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(config);
        options.Validate();
        if (options.Device != ComputeDevice.Cuda)
        {
            throw new ArgumentException("--load-format dummy makes its weights on the GPU and needs --device cuda (on the CPU, write a checkpoint with make-model)", "load-format");
        }
        var tokenizer = TextTokenizer.Load(Assets.Qwen3TokenizerDirectory);
        var eos = config.EosTokenIds.Concat(tokenizer.EosTokenIds).Distinct().ToArray();
        var backend = CudaBackend.CreateDummy(config, seed, CudaBackendOptions.From(options));
        return Create(backend, tokenizer, eos, options, options.WeightsVersion ?? DummyWeightsVersion(seed), null, null);
    }

    /// <summary>The weights identity of dummy weights made from <paramref name="seed"/>.</summary>
    public static string DummyWeightsVersion(ulong seed) => $"dummy-seed-{seed}";

    private static IModelBackend CreateBackend(Checkpoint checkpoint, EngineOptions options) => options.Device == ComputeDevice.Cuda
        ? CudaBackend.Load(checkpoint, CudaBackendOptions.From(options))
        : CpuBackend.Load(checkpoint, options.ResolvedNumBlocks, options.BlockSize);

    private static LlmEngine Create(IModelBackend backend, TextTokenizer tokenizer, int[] eos, EngineOptions options, string weightsIdentity, IEnumerable<BlockChannel>? auxiliaryChannels, Storage.IBlockStore? blockStore)
    {
        try
        {
            return new LlmEngine(backend, tokenizer, eos, options, weightsIdentity, auxiliaryChannels, blockStore);
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }
}
