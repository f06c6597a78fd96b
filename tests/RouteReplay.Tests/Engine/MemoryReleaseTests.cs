using RouteReplay.Backends;
using RouteReplay.Backends.Cpu;
using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Engine;

/// <summary>
/// The engine's release and resume of its memory: only at an idle point, with no block held into the released pool,
/// the device prefix cache dropped, and outputs after a resume exactly those of a fresh engine.
/// </summary>
public sealed class MemoryReleaseTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private static readonly EngineOptions Options = new() { NumBlocks = 128, MaxNumSeqs = 8, MaxNumBatchedTokens = 64 };

    private EngineRequest Request(string id, int maxTokens = 6) => new()
    {
        RequestId = id,
        PromptTokenIds = model.Tokenizer.Encode(string.Concat(Enumerable.Repeat("the trainer takes the GPU between rollouts ", 4))),
        Sampling = new SamplingParams { Temperature = 0, MaxTokens = maxTokens },
        ReturnRouting = true,
    };

    private EngineRequest Seeded(string id) => Request(id, maxTokens: 12) with
    {
        Sampling = new SamplingParams { Temperature = 1.2f, TopP = 0.95f, Seed = 20_260_518, MaxTokens = 12, IgnoreEos = true },
    };

    private static void AssertSameChoice(RequestResult expected, RequestResult actual)
    {
        Assert.Equal(expected.Choices[0].TokenIds, actual.Choices[0].TokenIds);
        Assert.Equal(expected.Choices[0].Routing!.Data, actual.Choices[0].Routing!.Data);
    }

    private static RequestResult RunOne(LlmEngine engine, EngineRequest request)
    {
        var runner = new EngineRunner();
        engine.AddRequest(request, runner);
        engine.RunToCompletion();
        var result = runner.Results[request.RequestId];
        Assert.Null(result.Error);
        return result;
    }

    [Fact]
    public void A_release_and_resume_drop_the_device_prefix_cache_and_greedy_and_seeded_requests_give_a_fresh_engines_tokens_and_routing()
    {
        using var engine = EngineRunner.Create(model, Options);
        var backend = (CpuBackend)engine.Backend;
        var first = RunOne(engine, Request("first"));
        var seeded = RunOne(engine, Seeded("seeded"));
        Assert.True(RunOne(engine, Request("cached")).Usage.CachedPromptTokens > 0);

        engine.ReleaseMemory(MemoryRegions.All, keepWeightsInHost: true);

        Assert.Equal(new MemoryState(true, WeightsResidence.HostCopy), engine.MemoryState);
        Assert.Equal(0, backend.KvCacheBytes);
        Assert.Equal(0, engine.Pool.CachedBlockCount);
        var refused = Assert.Throws<InvalidOperationException>(() => engine.AddRequest(Request("while-released"), new EngineRunner()));
        Assert.Contains("released", refused.Message);

        engine.ResumeMemory(MemoryRegions.All);

        Assert.Equal(MemoryState.Awake, engine.MemoryState);
        Assert.True(backend.KvCacheBytes > 0);
        var after = RunOne(engine, Request("after"));
        Assert.Equal(0, after.Usage.CachedPromptTokens);
        AssertSameChoice(first, after);
        AssertSameChoice(seeded, RunOne(engine, Seeded("seeded-after")));
    }

    [Fact]
    public void A_weights_only_release_keeps_the_device_prefix_cache_whose_blocks_are_still_valid()
    {
        using var engine = EngineRunner.Create(model, Options);
        var first = RunOne(engine, Request("first"));
        var cached = engine.Pool.CachedBlockCount;
        Assert.True(cached > 0);

        engine.ReleaseMemory(MemoryRegions.Weights, keepWeightsInHost: true);

        Assert.Equal(new MemoryState(false, WeightsResidence.HostCopy), engine.MemoryState);
        Assert.Equal(cached, engine.Pool.CachedBlockCount);
        engine.ResumeMemory(MemoryRegions.Weights);
        var after = RunOne(engine, Request("after"));
        Assert.True(after.Usage.CachedPromptTokens > 0);
        AssertSameChoice(first, after);
    }

    [Fact]
    public void A_release_of_no_region_changes_nothing_even_with_a_request_running()
    {
        using var engine = EngineRunner.Create(model, Options);
        var runner = new EngineRunner();
        engine.AddRequest(Request("running"), runner);
        engine.Step();

        engine.ReleaseMemory(MemoryRegions.None, keepWeightsInHost: false);

        Assert.Equal(MemoryState.Awake, engine.MemoryState);
        engine.RunToCompletion();
        Assert.Null(runner.Results["running"].Error);
    }

    [Fact]
    public void A_release_with_a_request_running_is_refused_and_changes_nothing()
    {
        using var engine = EngineRunner.Create(model, Options);
        var runner = new EngineRunner();
        engine.AddRequest(Request("running", maxTokens: 20), runner);
        engine.Step();

        Assert.Throws<InvalidOperationException>(() => engine.ReleaseMemory(MemoryRegions.All, keepWeightsInHost: true));

        Assert.Equal(MemoryState.Awake, engine.MemoryState);
        Assert.False(((CpuBackend)engine.Backend).KvCacheReleased);
        engine.RunToCompletion();
        Assert.Null(runner.Results["running"].Error);
    }

    [Fact]
    public void Blocks_an_export_still_holds_for_its_peer_are_given_back_before_the_pool_is_released()
    {
        using var engine = EngineRunner.Create(model, Options);
        var export = new BlockExport(0, []);
        engine.AddRequest(Request("exported") with { PrefillExport = export }, new EngineRunner());
        engine.RunToCompletion();
        while (export.Items.TryRead(out var item))
        {
            (item as ExportPayload)?.Block.Dispose();
        }
        Assert.Equal(1, engine.HoldingExports);
        Assert.True(engine.Pool.UsedBlockCount > 0);

        engine.ReleaseMemory(MemoryRegions.KvCache, keepWeightsInHost: true);

        Assert.Equal(0, engine.HoldingExports);
        Assert.Equal(0, engine.Pool.UsedBlockCount);
        Assert.True(engine.MemoryState.KvCacheReleased);
        Assert.Equal(WeightsResidence.Resident, engine.MemoryState.Weights);
    }

    [Fact]
    public void Discarded_weights_refuse_a_resume_until_new_weights_are_applied()
    {
        using var engine = EngineRunner.Create(model, Options);
        var first = RunOne(engine, Request("first"));
        var update = engine.PrepareWeightUpdate(model.Directory, "step-1");
        var changes = new List<MemoryState>();
        engine.MemoryStateChanged = changes.Add;

        engine.ReleaseMemory(MemoryRegions.All, keepWeightsInHost: false);
        var refused = Assert.Throws<WeightsDiscardedException>(() => engine.ResumeMemory(MemoryRegions.All));
        Assert.Contains("update", refused.Message);
        Assert.Equal(new MemoryState(true, WeightsResidence.Discarded), engine.MemoryState);

        engine.ResumeMemory(MemoryRegions.KvCache);
        Assert.Equal(new MemoryState(false, WeightsResidence.Discarded), engine.MemoryState);
        engine.ApplyWeightUpdate(update);

        Assert.Equal(MemoryState.Awake, engine.MemoryState);
        Assert.Equal(MemoryState.Awake, changes[^1]);
        AssertSameChoice(first, RunOne(engine, Request("after")));
    }
}
