using RouteReplay.Backends;
using RouteReplay.Backends.Cpu;
using RouteReplay.Cache;
using RouteReplay.Engine;

namespace RouteReplay.Tests.Support;

/// <summary>Collects results from an engine's sinks, and runs workloads one at a time or all at once.</summary>
public sealed class EngineRunner : IRequestSink
{
    public Dictionary<string, RequestResult> Results { get; } = [];

    public Dictionary<string, List<StreamDelta>> Deltas { get; } = [];

    public void OnDelta(StreamDelta delta)
    {
        if (!Deltas.TryGetValue(delta.RequestId, out var list))
        {
            Deltas[delta.RequestId] = list = [];
        }
        list.Add(delta);
    }

    public void OnFinished(RequestResult result) => Results.Add(result.RequestId, result);

    public static LlmEngine Create(TinyModelFixture model, EngineOptions options, bool withTestChannel = true, RouteReplay.Storage.IBlockStore? blockStore = null)
    {
        var resolved = options.Validate();
        BlockChannel[] channels = withTestChannel ? [new TokenPositionChannel(resolved.ResolvedNumBlocks, resolved.BlockSize)] : [];
        return LoadedModel.LoadCpu(model.Directory, options with { WeightsVersion = options.WeightsVersion ?? "test" }, channels, blockStore);
    }

    /// <summary>
    /// An engine on a <see cref="BatchVariantBackend"/> around the CPU backend, with the test channel and a
    /// <see cref="FirstComputedRows"/> recorder attached.
    /// </summary>
    public static (LlmEngine Engine, BatchVariantBackend Backend, FirstComputedRows FirstRows) CreateBatchVariant(TinyModelFixture model, EngineOptions options) =>
        CreateBatchVariant(model.Directory, options);

    /// <summary>As <see cref="CreateBatchVariant(TinyModelFixture, EngineOptions)"/>, for the checkpoint in <paramref name="directory"/>.</summary>
    public static (LlmEngine Engine, BatchVariantBackend Backend, FirstComputedRows FirstRows) CreateBatchVariant(string directory, EngineOptions options)
    {
        var resolved = options.Validate();
        BatchVariantBackend? backend = null;
        var engine = LoadedModel.Load(
            directory,
            options with { WeightsVersion = "test" },
            (checkpoint, o) => backend = new BatchVariantBackend(CpuBackend.Load(checkpoint, o.ResolvedNumBlocks, o.BlockSize)),
            [new TokenPositionChannel(resolved.ResolvedNumBlocks, resolved.BlockSize)]);
        return (engine, backend!, FirstComputedRows.Attach(engine));
    }

    /// <summary>An engine on the CPU backend wrapped by <paramref name="wrap"/> (a faulty or instrumented backend), with the test channel.</summary>
    public static LlmEngine CreateWrapped(TinyModelFixture model, EngineOptions options, Func<IModelBackend, IModelBackend> wrap)
    {
        var resolved = options.Validate();
        return LoadedModel.Load(
            model.Directory,
            options with { WeightsVersion = "test" },
            (checkpoint, o) => wrap(CpuBackend.Load(checkpoint, o.ResolvedNumBlocks, o.BlockSize)),
            [new TokenPositionChannel(resolved.ResolvedNumBlocks, resolved.BlockSize)]);
    }

    /// <summary>The reference path: each request alone, prefix caching off, a token budget that fits any prompt.</summary>
    public static Dictionary<string, RequestResult> OneAtATime(TinyModelFixture model, IEnumerable<EngineRequest> requests)
    {
        using var engine = Create(model, new EngineOptions { EnablePrefixCaching = false, MaxNumBatchedTokens = 4096, MaxNumSeqs = 8, NumBlocks = 256 });
        var runner = new EngineRunner();
        foreach (var request in requests)
        {
            engine.AddRequest(request, runner);
            engine.RunToCompletion();
        }
        return runner.Results;
    }
}
