using RouteReplay.Engine;
using RouteReplay.Tests.Support;
using static RouteReplay.Tests.Support.Eventually;

namespace RouteReplay.Tests.Engine;

/// <summary>
/// Rows never change once produced, on a backend whose routing depends on the batch (as a GPU's may): on every
/// lifecycle path, each returned row equals the row its token was first computed with. The CPU backend alone is batch
/// invariant, so recomputing a token there gives the same row and hides a path that routes it afresh.
/// </summary>
public sealed class RowsNeverChangeTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private int[] Prompt(string text, int length) =>
        [.. model.Tokenizer.Encode(string.Concat(Enumerable.Repeat(text + " ", 40))).Take(length)];

    private static EngineRequest Greedy(string id, int[] prompt, int maxTokens, int n = 1) => new()
    {
        RequestId = id,
        PromptTokenIds = prompt,
        N = n,
        Sampling = new SamplingParams { Temperature = 0f, MaxTokens = maxTokens, IgnoreEos = true },
    };

    [Fact]
    public void The_batch_variant_backend_routes_a_token_differently_in_another_batch_and_honours_forced_rows()
    {
        var prompt = Prompt("The router picks two experts for every token", 24);
        var options = new EngineOptions { NumBlocks = 32, SwapSpaceGiB = 0, EnablePrefixCaching = false };
        var (alone, aloneBackend, _) = EngineRunner.CreateBatchVariant(model, options);
        var (batched, _, _) = EngineRunner.CreateBatchVariant(model, options);
        using (alone)
        using (batched)
        {
            var aloneRun = Run(alone, Greedy("x", prompt, 4));
            var batchedRun = Run(batched, Greedy("other", Prompt("Something else entirely", 9), 4), Greedy("x", prompt, 4));
            var a = aloneRun["x"].Choices[0].Routing!.Data;
            var b = batchedRun["x"].Choices[0].Routing!.Data;
            Assert.Equal(a.Length, b.Length);
            Assert.NotEqual(a, b);
            Assert.True(aloneBackend.ShiftedRows >= prompt.Length);
        }

        // A recompute replays the saved rows as forced routing: the backend must hand them back unchanged.
        var (engine, backend, firstRows) = EngineRunner.CreateBatchVariant(model, options with { NumBlocks = 5, MaxNumSeqs = 2, PreemptionMode = PreemptionMode.Recompute });
        using (engine)
        {
            var results = Run(engine, Greedy("r0", Prompt("Request zero asks for a long answer", 30), 40), Greedy("r1", Prompt("Request one asks for another long answer", 30), 40));
            Assert.True(engine.Stats.PreemptionsByRecompute > 0);
            Assert.True(backend.ForcedRows > 0);
            firstRows.AssertUnchanged(results.Values);
        }
    }

    [Fact]
    public void A_prefix_hit_returns_the_rows_its_first_computation_produced()
    {
        var shared = Prompt("Routing replay keeps every expert choice exact", 40);
        var (engine, _, firstRows) = EngineRunner.CreateBatchVariant(model, new EngineOptions { NumBlocks = 32, SwapSpaceGiB = 0 });
        using var _ = engine;
        var runner = new EngineRunner();
        engine.AddRequest(Greedy("first", [.. shared, 11], 4), runner);
        engine.RunToCompletion();
        engine.AddRequest(Greedy("second", [.. shared, 13, 14], 4), runner);
        engine.RunToCompletion();

        Assert.Equal(32, runner.Results["second"].Usage.CachedPromptTokens);
        firstRows.AssertUnchanged(runner.Results.Values);
        Assert.Equal(firstRows.Rows("first", 0, 0, 32), firstRows.Rows("second", 0, 0, 32));
    }

    [Fact]
    public void Chunked_prefill_of_batched_requests_keeps_every_row()
    {
        var (engine, _, firstRows) = EngineRunner.CreateBatchVariant(model, new EngineOptions { NumBlocks = 48, MaxNumBatchedTokens = 7, SwapSpaceGiB = 0 });
        using var _ = engine;
        var results = Run(
            engine,
            Greedy("a", Prompt("A prompt long enough to need several chunks", 37), 6),
            Greedy("b", Prompt("A second prompt that shares the steps", 21), 9),
            Greedy("c", Prompt("A prompt long enough to need several chunks", 45), 5));
        firstRows.AssertUnchanged(results.Values);
        Assert.True(engine.Stats.PeakBatchedTokens <= 7);
    }

    public static TheoryData<PreemptionMode> Modes => new() { PreemptionMode.Recompute, PreemptionMode.Auto };

    /// <summary>
    /// The shared-prefix workload (prefix hits, n = 3, block-boundary prompts) on a pool far too small: recomputes
    /// that meet other requests' cached prompt blocks, swaps (auto), host-tier demotions and promotions all happen.
    /// </summary>
    [Theory]
    [MemberData(nameof(Modes))]
    public void A_pool_far_too_small_preempts_and_no_row_changes(PreemptionMode mode)
    {
        var workload = SharedPrefixWorkload.Build(model.Tokenizer, greedy: true, null);
        var probe = EngineRunner.Create(model, new EngineOptions { NumBlocks = 10, SwapSpaceGiB = 0 });
        var hostBlocks = mode == PreemptionMode.Auto ? 2.5 : 40;
        var swapSpace = hostBlocks * probe.PayloadCopier.PayloadBytes / (double)(1L << 30);
        probe.Dispose();
        var options = new EngineOptions { MaxNumSeqs = 6, MaxNumBatchedTokens = 32, NumBlocks = 10, PreemptionMode = mode, SwapSpaceGiB = swapSpace };
        var (engine, _, firstRows) = EngineRunner.CreateBatchVariant(model, options);
        using var _ = engine;
        var results = Run(engine, [.. workload]);

        firstRows.AssertUnchanged(results.Values);
        var stats = engine.Stats;
        Assert.True(mode == PreemptionMode.Recompute ? stats.PreemptionsBySwap == 0 : stats.PreemptionsBySwap > 0);
        Assert.True(stats.PreemptionsByRecompute > 0);
        Assert.True(stats.PrefixHitsRefusedForRouting > 0, "recomputing requests must meet blocks whose rows differ from theirs");
        Assert.True(stats.PrefixCacheHitTokens > 0);
        var host = engine.HostTier!;
        Assert.True(mode == PreemptionMode.Auto || host.BlocksPromoted > 0, "recompute mode keeps the host tier for demoted prefixes");
        Assert.Equal(0, host.UsedBlockCount);
        Assert.Equal(0, engine.Pool.UsedBlockCount);
    }

    [Fact]
    public void A_request_swapped_out_and_back_in_keeps_every_row()
    {
        var options = new EngineOptions { BlockSize = 4, NumBlocks = 40, PreemptionMode = PreemptionMode.Swap, SwapSpaceGiB = 0.01 };
        var (engine, _, firstRows) = EngineRunner.CreateBatchVariant(model, options);
        using var _ = engine;
        var thief = new BlockThief(engine.Pool);
        var runner = new EngineRunner();
        engine.AddRequest(Greedy("steady", Prompt("A request that keeps decoding", 10), 30), runner);
        engine.AddRequest(Greedy("victim", Prompt("The request swapped out to host memory", 20), 20), runner);
        var victim = engine.FindSequence("victim", 0)!;
        StepUntil(engine, () => victim.OutputCount >= 6);

        thief.TakeAllFree();
        StepUntil(engine, () => victim.IsSwapped);
        thief.GiveBack();
        engine.RunToCompletion();

        Assert.Equal(1, engine.Stats.PreemptionsBySwap);
        Assert.Equal(engine.HostTier!.BlocksSwappedOut, engine.HostTier.BlocksSwappedIn);
        Assert.Null(runner.Results["victim"].Error);
        firstRows.AssertUnchanged(runner.Results.Values);
    }

    [Fact]
    public void A_second_recompute_preemption_part_way_through_the_first_recompute_keeps_every_saved_row()
    {
        var options = new EngineOptions { BlockSize = 4, NumBlocks = 40, MaxNumBatchedTokens = 6, EnablePrefixCaching = false, PreemptionMode = PreemptionMode.Recompute, SwapSpaceGiB = 0 };
        var (engine, _, firstRows) = EngineRunner.CreateBatchVariant(model, options);
        using var _ = engine;
        var thief = new BlockThief(engine.Pool);
        var runner = new EngineRunner();
        engine.AddRequest(Greedy("steady", Prompt("A request that keeps decoding", 10), 60), runner);
        engine.AddRequest(Greedy("victim", Prompt("The request preempted twice by recompute", 20), 30), runner);
        var victim = engine.FindSequence("victim", 0)!;
        StepUntil(engine, () => victim.OutputCount >= 8);

        thief.TakeAllFree();
        StepUntil(engine, () => victim.Status == SequenceStatus.Waiting);
        thief.GiveBack();
        var savedFirst = victim.SavedRoutingRows;
        Assert.True(savedFirst >= 27, $"the first preemption saved {savedFirst} rows");
        StepUntil(engine, () => victim.Status == SequenceStatus.Running && victim.ComputedTokens >= 10);

        var computedBefore = victim.ComputedTokens;
        thief.TakeAllFree();
        StepUntil(engine, () => victim.Status == SequenceStatus.Waiting);
        thief.GiveBack();
        Assert.True(computedBefore < savedFirst, $"the second preemption came after {computedBefore} of {savedFirst} rows were recomputed");
        Assert.Equal(2, engine.Stats.PreemptionsByRecompute);
        engine.RunToCompletion();

        Assert.Null(runner.Results["victim"].Error);
        firstRows.AssertUnchanged(runner.Results.Values);
    }

    [Fact]
    public void A_recomputing_request_never_takes_a_prefix_hit_on_rows_another_request_computed()
    {
        var prompt = Prompt("Both requests share this prompt word for word", 13);
        var options = new EngineOptions { BlockSize = 4, NumBlocks = 48, MaxNumBatchedTokens = 64, PreemptionMode = PreemptionMode.Recompute, SwapSpaceGiB = 0 };
        var (engine, _, firstRows) = EngineRunner.CreateBatchVariant(model, options);
        using var _ = engine;
        var thief = new BlockThief(engine.Pool);
        var runner = new EngineRunner();
        engine.AddRequest(Greedy("owner", prompt, 30), runner);
        engine.AddRequest(Greedy("victim", prompt, 30), runner);
        var victim = engine.FindSequence("victim", 0)!;
        StepUntil(engine, () => victim.OutputCount >= 6);

        thief.TakeAllFree();
        StepUntil(engine, () => victim.Status == SequenceStatus.Waiting);
        thief.GiveBack();
        var hitsBefore = engine.Pool.HitBlocks;
        engine.RunToCompletion();

        Assert.True(engine.Pool.HitBlocks > hitsBefore, "the re-admission must have found the owner's blocks in the prefix index");
        Assert.Null(runner.Results["victim"].Error);
        firstRows.AssertUnchanged(runner.Results.Values);
        Assert.True(engine.Stats.PrefixHitsRefusedForRouting > 0, "the owner's rows differ, so the hit must be refused");
    }

    [Fact]
    public void A_recomputing_request_never_takes_a_host_tier_promotion_of_rows_another_request_computed()
    {
        var prompt = Prompt("Both requests share this prompt word for word", 13);
        var options = new EngineOptions { BlockSize = 4, NumBlocks = 48, MaxNumBatchedTokens = 64, PreemptionMode = PreemptionMode.Recompute, SwapSpaceGiB = 0.01 };
        var (engine, _, firstRows) = EngineRunner.CreateBatchVariant(model, options);
        using var _ = engine;
        var thief = new BlockThief(engine.Pool);
        var runner = new EngineRunner();
        engine.AddRequest(Greedy("steady", Prompt("An unrelated request that keeps decoding", 10), 60), runner);
        engine.AddRequest(Greedy("owner", prompt, 2), runner);
        engine.AddRequest(Greedy("victim", prompt, 30), runner);
        var victim = engine.FindSequence("victim", 0)!;
        StepUntil(engine, () => runner.Results.ContainsKey("owner") && victim.OutputCount >= 6);

        thief.TakeAllFree();
        StepUntil(engine, () => victim.Status == SequenceStatus.Waiting);
        thief.GiveBack();
        var host = engine.HostTier!;
        Assert.True(host.BlocksDemoted >= 3, "the owner's cached prompt blocks must have been demoted to the host tier");
        var promotedBefore = host.BlocksPromoted;
        engine.RunToCompletion();

        Assert.True(host.BlocksPromoted > promotedBefore, "the re-admission must have found the owner's blocks in the host tier");
        Assert.Null(runner.Results["victim"].Error);
        firstRows.AssertUnchanged(runner.Results.Values);
        Assert.True(engine.Stats.PrefixHitsRefusedForRouting > 0, "the owner's rows differ, so the promoted block must be refused");
    }

    [Fact]
    public void A_prefix_demoted_to_the_host_tier_and_promoted_back_keeps_its_first_rows()
    {
        var shared = Prompt("Routing replay keeps every expert choice exact", 80);
        var (engine, _, firstRows) = EngineRunner.CreateBatchVariant(model, new EngineOptions { NumBlocks = 12, MaxNumSeqs = 1, SwapSpaceGiB = 0.01 });
        using var _ = engine;
        var runner = new EngineRunner();
        engine.AddRequest(Greedy("first", [.. shared, 11], 4), runner);
        engine.RunToCompletion();
        for (var i = 0; i < 4; i++)
        {
            engine.AddRequest(Greedy($"filler-{i}", Prompt($"An unrelated request number {i} that fills the pool", 60), 30), runner);
            engine.RunToCompletion();
        }
        var host = engine.HostTier!;
        Assert.True(host.BlocksDemoted >= 5);
        engine.AddRequest(Greedy("second", [.. shared, 13, 14, 15], 6), runner);
        engine.RunToCompletion();

        Assert.Equal(80, runner.Results["second"].Usage.CachedPromptTokens);
        Assert.True(host.BlocksPromoted >= 5);
        firstRows.AssertUnchanged(runner.Results.Values);
        Assert.Equal(firstRows.Rows("first", 0, 0, 80), firstRows.Rows("second", 0, 0, 80));
    }

    [Fact]
    public void Choices_of_one_request_share_the_prompt_rows_their_first_choice_computed()
    {
        var (engine, _, firstRows) = EngineRunner.CreateBatchVariant(model, new EngineOptions { NumBlocks = 48, SwapSpaceGiB = 0 });
        using var _ = engine;
        var request = Greedy("n3", Prompt("Write three endings for the story", 40), 8, n: 3) with
        {
            Sampling = new SamplingParams { Temperature = 1f, Seed = 5, MaxTokens = 8, IgnoreEos = true },
        };
        var results = Run(engine, request);
        firstRows.AssertUnchanged(results.Values);
        for (var c = 1; c < 3; c++)
        {
            Assert.Equal(firstRows.Rows("n3", 0, 0, 32), firstRows.Rows("n3", c, 0, 32));
        }
    }

    [Fact]
    public void Aborting_requests_while_others_are_swapped_or_recomputing_lets_the_rest_resume_with_their_rows()
    {
        var probe = EngineRunner.Create(model, new EngineOptions { NumBlocks = 10, SwapSpaceGiB = 0 });
        var swapSpace = 3.5 * probe.PayloadCopier.PayloadBytes / (double)(1L << 30);
        probe.Dispose();
        var options = new EngineOptions { MaxNumSeqs = 6, MaxNumBatchedTokens = 32, NumBlocks = 10, PreemptionMode = PreemptionMode.Auto, SwapSpaceGiB = swapSpace };
        var (engine, _, firstRows) = EngineRunner.CreateBatchVariant(model, options);
        using var _ = engine;
        var runner = new EngineRunner();
        var requests = Enumerable.Range(0, 6).Select(i => Greedy($"r{i}", Prompt($"Request {i} asks the router for a long answer", 20 + (3 * i)), 24)).ToArray();
        foreach (var request in requests)
        {
            engine.AddRequest(request, runner);
        }
        Sequence? Find(Func<Sequence, bool> wanted) =>
            requests.Select(r => engine.FindSequence(r.RequestId, 0)).FirstOrDefault(s => s is not null && wanted(s));
        StepUntil(engine, () => Find(s => s.IsSwapped) is not null && Find(s => s is { Status: SequenceStatus.Waiting, SavedRoutingRows: > 0, IsSwapped: false }) is not null);

        var swapped = Find(s => s.IsSwapped)!.Request.Request.RequestId;
        var recomputing = Find(s => s is { Status: SequenceStatus.Waiting, SavedRoutingRows: > 0, IsSwapped: false })!.Request.Request.RequestId;
        var running = Find(s => s.Status == SequenceStatus.Running)?.Request.Request.RequestId;
        string[] aborted = [swapped, recomputing, .. running is null ? Array.Empty<string>() : [running]];
        Assert.True(requests.Any(r => engine.FindSequence(r.RequestId, 0) is { Status: SequenceStatus.Waiting } && !aborted.Contains(r.RequestId)), "some preempted request must be left to resume");
        foreach (var id in aborted)
        {
            Assert.True(engine.Abort(id));
        }
        engine.RunToCompletion();

        foreach (var request in requests)
        {
            var result = runner.Results[request.RequestId];
            Assert.Null(result.Error);
            Assert.Equal(aborted.Contains(request.RequestId) ? FinishReason.Abort : FinishReason.Length, result.Choices[0].FinishReason);
        }
        firstRows.AssertUnchanged(runner.Results.Values);
        Assert.Equal(0, engine.HostTier!.UsedBlockCount);
        Assert.Equal(0, engine.Pool.UsedBlockCount);
    }

    /// <summary>
    /// Random small pools, block sizes, budgets and preemption modes; requests with shared prefixes, n &gt; 1 and seeded
    /// sampling arrive between steps, and some are aborted. The seeds are ones whose runs swap, recompute, and refuse
    /// prefix hits whose rows differ from a recomputing request's saved rows.
    /// </summary>
    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(14)]
    [InlineData(53)]
    [InlineData(76)]
    public void Random_workloads_with_arrivals_and_aborts_keep_every_row(int seed)
    {
        var random = new Random(seed);
        var blockSize = new[] { 1, 2, 4, 8, 16 }[random.Next(5)];
        var mode = (PreemptionMode)random.Next(3);
        var prefixCaching = random.Next(4) != 0;
        var hostBlocks = random.Next(3) == 0 ? 0 : random.Next(1, 40);
        if (mode == PreemptionMode.Swap && hostBlocks == 0)
        {
            hostBlocks = 5;
        }
        string[] texts = ["Shared system prompt for all of the requests in here", "Another prompt", "Shared system prompt for all"];
        var requests = new List<EngineRequest>();
        var longest = 0;
        for (var i = random.Next(3, 9); i > 0; i--)
        {
            var prompt = Prompt(texts[random.Next(texts.Length)], random.Next(3, 40));
            var n = random.Next(4) == 0 ? random.Next(2, 4) : 1;
            var maxTokens = random.Next(1, 25);
            longest = Math.Max(longest, prompt.Length + maxTokens);
            var sampling = new SamplingParams { Temperature = random.Next(2) == 0 ? 0f : 1f, Seed = (ulong)i, MaxTokens = maxTokens, IgnoreEos = true };
            requests.Add(new EngineRequest { RequestId = $"q{i}", PromptTokenIds = prompt, N = n, Sampling = sampling });
        }
        var minBlocks = (longest + blockSize - 1) / blockSize;
        var probe = EngineRunner.Create(model, new EngineOptions { NumBlocks = 1, BlockSize = blockSize, SwapSpaceGiB = 0 });
        var swapSpace = hostBlocks * (double)probe.PayloadCopier.PayloadBytes / (1L << 30);
        probe.Dispose();
        var options = new EngineOptions
        {
            BlockSize = blockSize,
            NumBlocks = minBlocks + random.Next(0, (minBlocks / 2) + 2),
            MaxNumSeqs = random.Next(1, 8),
            MaxNumBatchedTokens = random.Next(1, 64),
            EnablePrefixCaching = prefixCaching,
            PreemptionMode = mode,
            SwapSpaceGiB = swapSpace,
        };
        var (engine, _, firstRows) = EngineRunner.CreateBatchVariant(model, options);
        using var _ = engine;
        var runner = new EngineRunner();
        var arrivals = requests.OrderBy(_ => random.Next()).ToList();
        var added = 0;
        while (added < arrivals.Count || engine.HasUnfinishedRequests)
        {
            if (added < arrivals.Count && random.Next(3) == 0)
            {
                engine.AddRequest(arrivals[added++], runner);
            }
            if (random.Next(30) == 0 && arrivals.Take(added).FirstOrDefault(r => !runner.Results.ContainsKey(r.RequestId)) is { } victim)
            {
                engine.Abort(victim.RequestId);
            }
            engine.Step();
        }

        Assert.All(runner.Results.Values, r => Assert.Null(r.Error));
        firstRows.AssertUnchanged(runner.Results.Values);
        Assert.True(engine.Stats.PreemptionsBySwap + engine.Stats.PreemptionsByRecompute > 0, "the pool must be small enough to preempt");
        Assert.Equal(0, engine.Pool.UsedBlockCount);
        Assert.Equal(0, engine.HostTier?.UsedBlockCount ?? 0);
    }

    private static Dictionary<string, RequestResult> Run(LlmEngine engine, params EngineRequest[] requests)
    {
        var runner = new EngineRunner();
        foreach (var request in requests)
        {
            engine.AddRequest(request, runner);
        }
        engine.RunToCompletion();
        foreach (var result in runner.Results.Values)
        {
            Assert.Null(result.Error);
        }
        return runner.Results;
    }

}
