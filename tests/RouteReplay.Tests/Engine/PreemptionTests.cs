using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Engine;

/// <summary>
/// Preemption by swap and by recompute, and the host prefix tier: with a device pool far too small for the workload,
/// tokens and every routing row stay byte-identical to the unconstrained one-at-a-time run, and the counters prove
/// which path was taken.
/// </summary>
public sealed class PreemptionTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    /// <summary>Bytes of one tiny-preset block payload with the routing and test channels (KV + rows).</summary>
    private static double GiBForHostBlocks(LlmEngine engine, double blocks) => blocks * engine.PayloadCopier.PayloadBytes / (double)(1L << 30);

    public static TheoryData<PreemptionMode, bool, double> Modes => new()
    {
        { PreemptionMode.Swap, true, 4000 },
        { PreemptionMode.Swap, false, 4000 },
        { PreemptionMode.Recompute, true, 0 },
        { PreemptionMode.Recompute, false, 0 },
        { PreemptionMode.Auto, true, 2.5 },
        { PreemptionMode.Auto, false, 2.5 },
    };

    [Theory]
    [MemberData(nameof(Modes))]
    public void A_pool_far_too_small_preempts_and_changes_nothing(PreemptionMode mode, bool greedy, double hostBlocks)
    {
        var (workload, reference) = SharedPrefixWorkload.WithReference(model, greedy);

        var probe = EngineRunner.Create(model, new EngineOptions { NumBlocks = 10, SwapSpaceGiB = 0 });
        var swapSpace = GiBForHostBlocks(probe, hostBlocks);
        probe.Dispose();
        var options = new EngineOptions { MaxNumSeqs = 6, MaxNumBatchedTokens = 32, NumBlocks = 10, PreemptionMode = mode, SwapSpaceGiB = swapSpace };
        using var engine = EngineRunner.Create(model, options);
        var runner = new EngineRunner();
        foreach (var request in workload)
        {
            engine.AddRequest(request, runner);
        }
        engine.RunToCompletion();

        SharedPrefixWorkload.AssertIdentical(workload, reference, runner.Results);
        var stats = engine.Stats;
        switch (mode)
        {
            case PreemptionMode.Swap:
                Assert.True(stats.PreemptionsBySwap > 0, "swap mode must swap");
                Assert.Equal(0, stats.PreemptionsByRecompute);
                break;
            case PreemptionMode.Recompute:
                Assert.True(stats.PreemptionsByRecompute > 0, "recompute mode must recompute");
                Assert.True(stats.RecomputedTokens > 0);
                Assert.Equal(0, stats.PreemptionsBySwap);
                break;
            default:
                Assert.True(stats.PreemptionsBySwap > 0, "auto swaps while the small host tier has room");
                Assert.True(stats.PreemptionsByRecompute > 0, "auto recomputes once the host tier is full");
                break;
        }
        if (engine.HostTier is { } host)
        {
            Assert.Equal(host.BlocksSwappedOut, host.BlocksSwappedIn);
            Assert.Equal(0, host.UsedBlockCount);
        }
        Assert.Equal(0, engine.Pool.UsedBlockCount);
        Assert.Equal(engine.Pool.NumBlocks, engine.Pool.FreeBlockCount);
    }

    [Fact]
    public void A_prefix_evicted_to_the_host_tier_is_promoted_back_without_recomputation()
    {
        var tokenizer = model.Tokenizer;
        var shared = tokenizer.Encode(string.Concat(Enumerable.Repeat("Routing replay keeps every expert choice exact. ", 12))).Take(80).ToArray();
        var first = new EngineRequest { RequestId = "first", PromptTokenIds = [.. shared, 11], Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 4 } };
        var filler = Enumerable.Range(0, 4).Select(i => new EngineRequest
        {
            RequestId = $"filler-{i}",
            PromptTokenIds = tokenizer.Encode($"An unrelated request number {i} that fills the device pool with other blocks, again and again and again."),
            Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 30 },
        }).ToArray();
        var second = new EngineRequest { RequestId = "second", PromptTokenIds = [.. shared, 13, 14, 15], Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 6 } };
        var reference = EngineRunner.OneAtATime(model, [second]);

        using var engine = EngineRunner.Create(model, new EngineOptions { NumBlocks = 12, MaxNumSeqs = 1, SwapSpaceGiB = 0.01 });
        var runner = new EngineRunner();
        foreach (var request in filler.Prepend(first))
        {
            engine.AddRequest(request, runner);
            engine.RunToCompletion();
        }
        var host = engine.HostTier!;
        Assert.True(host.BlocksDemoted >= 5, $"the shared prefix must have been demoted ({host.BlocksDemoted})");
        Assert.True(engine.Pool.Evictions > 0);

        var computedBefore = engine.Stats.ComputedTokens;
        engine.AddRequest(second, runner);
        engine.RunToCompletion();

        var result = runner.Results["second"];
        Assert.Equal(80, result.Usage.CachedPromptTokens);
        Assert.True(host.BlocksPromoted >= 5);
        Assert.Equal(second.PromptTokenIds.Count - 80 + result.Choices[0].TokenIds.Count - 1, engine.Stats.ComputedTokens - computedBefore);
        Assert.Equal(reference["second"].Choices[0].TokenIds, result.Choices[0].TokenIds);
        Assert.Equal(reference["second"].Choices[0].Routing!.Data, result.Choices[0].Routing!.Data);
        Assert.Equal(TokenPositionChannel.Expected([.. second.PromptTokenIds, .. result.Choices[0].TokenIds], 0, result.Choices[0].Routing!.RowCount), result.AuxiliaryRows[0]!["token-position"]);
    }

    [Fact]
    public void Recompute_replays_the_saved_rows_so_rows_altered_on_purpose_come_back_altered()
    {
        var requests = TwoLongRequests();
        using var engine = EngineRunner.Create(model, new EngineOptions { NumBlocks = 5, MaxNumSeqs = 2, EnablePrefixCaching = false, PreemptionMode = PreemptionMode.Recompute, SwapSpaceGiB = 0 });
        var runner = new EngineRunner();
        var victim = StepUntil(engine, requests, runner, s => s is { SavedRouting: not null, Status: SequenceStatus.Waiting });
        var format = engine.RoutingFormat;
        var altered = new byte[format.RowBytes];
        for (var i = 0; i < format.ElementsPerRow; i++)
        {
            format.Set(altered, i, (format.Get(victim.SavedRouting!.AsSpan(2 * format.RowBytes), i) + 1) % format.NumExperts);
        }
        altered.CopyTo(victim.SavedRouting.AsSpan(2 * format.RowBytes));
        engine.RunToCompletion();

        var routing = runner.Results[victim.Request.Request.RequestId].Choices[0].Routing!;
        Assert.Equal(altered, routing.Data.AsSpan(2 * format.RowBytes, format.RowBytes).ToArray());
        Assert.True(engine.Stats.RecomputedTokens > 0);
    }

    [Fact]
    public void Aborting_a_swapped_out_request_frees_its_host_blocks()
    {
        var requests = TwoLongRequests();
        using var engine = EngineRunner.Create(model, new EngineOptions { NumBlocks = 5, MaxNumSeqs = 2, PreemptionMode = PreemptionMode.Swap, SwapSpaceGiB = 0.01 });
        var runner = new EngineRunner();
        var swapped = StepUntil(engine, requests, runner, s => s is { IsSwapped: true });
        Assert.True(engine.HostTier!.UsedBlockCount > 0);
        Assert.True(engine.Abort(swapped.Request.Request.RequestId));
        Assert.Equal(0, engine.HostTier.UsedBlockCount);
        engine.RunToCompletion();
        Assert.Equal(0, engine.Pool.UsedBlockCount);
        Assert.Equal(FinishReason.Abort, runner.Results[swapped.Request.Request.RequestId].Choices[0].FinishReason);
    }

    private EngineRequest[] TwoLongRequests() => Enumerable.Range(0, 2).Select(i => new EngineRequest
    {
        RequestId = $"r{i}",
        PromptTokenIds = model.Tokenizer.Encode($"Request {i} asks the router to pick experts for a fairly long prompt, token after token."),
        Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 40, IgnoreEos = true },
    }).ToArray();

    /// <summary>Adds the requests, then steps until one of their sequences is in the wanted state, and returns it.</summary>
    private static Sequence StepUntil(LlmEngine engine, EngineRequest[] requests, EngineRunner runner, Func<Sequence?, bool> wanted)
    {
        foreach (var request in requests)
        {
            engine.AddRequest(request, runner);
        }
        for (var step = 0; step < 500 && engine.Step(); step++)
        {
            if (requests.Select(r => engine.FindSequence(r.RequestId, 0)).FirstOrDefault(wanted) is { } found)
            {
                return found;
            }
        }
        throw new Xunit.Sdk.XunitException("no sequence reached the wanted state");
    }
}
