using RouteReplay.Backends;
using RouteReplay.Backends.Cpu;
using RouteReplay.Engine;

namespace RouteReplay.Tests.Support;

/// <summary>Loads a checkpoint as <see cref="LoadedModel.LoadCpu"/> does, with the CPU backend wrapped by a test backend.</summary>
public static class WrappedEngine
{
    public static LlmEngine Load(string modelDir, EngineOptions options, Func<IModelBackend, IModelBackend> wrap) =>
        LoadedModel.Load(
            modelDir,
            options with { WeightsVersion = options.WeightsVersion ?? "test" },
            (checkpoint, resolved) => wrap(CpuBackend.Load(checkpoint, resolved.ResolvedNumBlocks, resolved.BlockSize)));
}
