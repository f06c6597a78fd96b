using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Engine;

/// <summary>
/// The engine's central invariant: batching, chunked prefill, prefix caching and eviction change nothing. A workload
/// with heavy shared prefixes runs (a) one request at a time without prefix caching and (b) all at once with prefix
/// caching, a small token budget that forces chunked prefill and a pool small enough to evict cached blocks; tokens,
/// routing rows and the test channel's rows must be byte-identical.
/// </summary>
public sealed class EngineInvariantTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Batched_chunked_cached_and_evicting_runs_equal_one_at_a_time_byte_for_byte(bool greedy)
    {
        var (workload, reference) = SharedPrefixWorkload.WithReference(model, greedy);

        using var engine = EngineRunner.Create(model, new EngineOptions { MaxNumSeqs = 4, MaxNumBatchedTokens = 24, NumBlocks = 24, SwapSpaceGiB = 0 });
        var runner = new EngineRunner();
        foreach (var request in workload)
        {
            engine.AddRequest(request, runner);
        }
        engine.RunToCompletion();

        SharedPrefixWorkload.AssertIdentical(workload, reference, runner.Results);
        Assert.True(engine.Stats.PrefixCacheHitTokens > 0, "the batched run must hit the prefix cache");
        Assert.True(engine.Pool.Evictions > 0, "the small pool must evict cached blocks");
        Assert.True(engine.Stats.PeakBatchedTokens <= 24);
        Assert.Equal(0, engine.Pool.UsedBlockCount);
        Assert.Equal(engine.Pool.NumBlocks, engine.Pool.FreeBlockCount);
        Assert.Contains(runner.Results.Values, r => r.Usage.CachedPromptTokens > 0);
        var n3 = runner.Results["n3"];
        Assert.Equal(3, n3.Choices.Count);
        if (!greedy)
        {
            Assert.True(n3.Choices.Select(c => string.Join(',', c.TokenIds)).Distinct().Count() > 1, "seeded choices use seed + i");
        }
    }
}
