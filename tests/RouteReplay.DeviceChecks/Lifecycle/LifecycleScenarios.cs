using RouteReplay.Backends;
using RouteReplay.Engine;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.DeviceChecks.Lifecycle;

/// <summary>
/// The lifecycle paths, each a small workload on a pool sized to force it, checked by <see cref="LifecycleHarness"/>:
/// prefix hits with chunked prefill, preemption by swap, by recompute (forced rows), the host tier (demotion and
/// promotion), n > 1, and abort. Each also asserts from the engine's counters that its path was taken.
/// </summary>
public static class LifecycleScenarios
{
    public static readonly string[] Names = ["prefix-hit-chunked-prefill", "swap", "recompute", "host-tier", "n-greater-than-1", "abort"];

    /// <summary>The options a scenario runs with; the backend's KV cache must have <see cref="EngineOptions.NumBlocks"/> blocks.</summary>
    public static EngineOptions Options(string scenario) => scenario switch
    {
        "prefix-hit-chunked-prefill" => new EngineOptions { NumBlocks = 256, MaxNumBatchedTokens = 48, MaxNumSeqs = 8, MaxModelLen = 512 },
        "swap" => new EngineOptions { NumBlocks = 14, MaxNumBatchedTokens = 64, MaxNumSeqs = 6, MaxModelLen = 256, PreemptionMode = PreemptionMode.Swap, SwapSpaceGiB = 0.5 },
        "recompute" => new EngineOptions { NumBlocks = 14, MaxNumBatchedTokens = 64, MaxNumSeqs = 6, MaxModelLen = 256, PreemptionMode = PreemptionMode.Recompute, SwapSpaceGiB = 0 },
        "host-tier" => new EngineOptions { NumBlocks = 12, MaxNumBatchedTokens = 256, MaxNumSeqs = 1, MaxModelLen = 256, SwapSpaceGiB = 0.25 },
        "n-greater-than-1" => new EngineOptions { NumBlocks = 128, MaxNumBatchedTokens = 128, MaxNumSeqs = 16, MaxModelLen = 256 },
        "abort" => new EngineOptions { NumBlocks = 64, MaxNumBatchedTokens = 16, MaxNumSeqs = 4, MaxModelLen = 256 },
        _ => throw new ArgumentException($"unknown lifecycle scenario '{scenario}'; known: {string.Join(", ", Names)}", nameof(scenario)),
    };

    /// <summary>Runs the scenario on <paramref name="backend"/> (which the harness wraps and disposes).</summary>
    public static LifecycleOutcome Run(string scenario, IModelBackend backend, TextTokenizer tokenizer)
    {
        using var harness = new LifecycleHarness(backend, tokenizer, Options(scenario));
        var problems = new List<string>();
        switch (scenario)
        {
            case "prefix-hit-chunked-prefill":
                PrefixHits(harness, tokenizer);
                Expect(harness.Engine.Stats.PrefixCacheHitTokens > 0, "prefix-cache hits", problems);
                Expect(harness.Engine.Stats.PeakBatchedTokens <= 48, "chunked prefill within the budget", problems);
                break;
            case "swap":
                Crowd(harness, tokenizer, greedy: false);
                Expect(harness.Engine.Stats.PreemptionsBySwap > 0, "preemption by swap", problems);
                Expect(harness.Engine.HostTier!.BlocksSwappedIn == harness.Engine.HostTier.BlocksSwappedOut, "every swapped block back", problems);
                break;
            case "recompute":
                Crowd(harness, tokenizer, greedy: false);
                Expect(harness.Engine.Stats.PreemptionsByRecompute > 0 && harness.Engine.Stats.RecomputedTokens > 0, "preemption by recompute", problems);
                Expect(harness.Recorder.ForcedRowsSeen > 0, "forced rows replayed", problems);
                break;
            case "host-tier":
                HostTier(harness, tokenizer);
                Expect(harness.Engine.HostTier!.BlocksDemoted > 0 && harness.Engine.HostTier.BlocksPromoted > 0, "demotion and promotion", problems);
                break;
            case "n-greater-than-1":
                for (var i = 0; i < 4; i++)
                {
                    harness.Add(Request(tokenizer, $"n{i}", $"Sample several continuations of request {i}, each one its own choice.", 24, greedy: false) with { N = 4 });
                }
                harness.RunToCompletion();
                Expect(harness.Results.Values.All(r => r.Choices.Count == 4), "four choices each", problems);
                break;
            case "abort":
                harness.Add(Request(tokenizer, "aborted", "A long request that will be aborted in the middle of its generation, long before the end.", 80, greedy: true));
                harness.Add(Request(tokenizer, "kept", "A request that keeps running after the other one is aborted.", 24, greedy: true));
                for (var i = 0; i < 8; i++)
                {
                    harness.Step();
                }
                Expect(harness.Engine.Abort("aborted"), "abort found the request", problems);
                harness.RunToCompletion();
                Expect(harness.Results["aborted"].Choices[0].FinishReason == FinishReason.Abort, "finish reason abort", problems);
                Expect(harness.Results["kept"].Choices[0].Routing is not null, "the other request's routing", problems);
                break;
            default:
                throw new ArgumentException($"unknown lifecycle scenario '{scenario}'", nameof(scenario));
        }
        return harness.Verify(scenario) with { PathProblems = problems };
    }

    /// <summary>One line with everything the run proved or failed to.</summary>
    public static string Describe(LifecycleOutcome o) =>
        $"{o.Scenario}: {o.Requests} requests, {o.Choices} choices, {o.RowsChecked} rows checked, {o.RowsDiffering} differ from their first computation, " +
        $"{o.RowsWithoutComputation} without one, forced rows {o.ForcedRowsSeen} seen / {o.ForcedRowsIgnored} ignored, {o.FailedRequests} failed requests, " +
        $"{o.BlocksLeft} blocks left; preemptions swap {o.Stats.PreemptionsBySwap} recompute {o.Stats.PreemptionsByRecompute}, prefix hit tokens {o.Stats.PrefixCacheHitTokens}" +
        (o.PathProblems.Count > 0 ? $"; path not taken: {string.Join(", ", o.PathProblems)}" : "");

    private static void PrefixHits(LifecycleHarness harness, TextTokenizer tokenizer)
    {
        var system = string.Concat(Enumerable.Repeat("You are a careful assistant that routes every token through its experts. ", 4));
        var first = new List<EngineRequest>();
        for (var i = 0; i < 6; i++)
        {
            first.Add(Request(tokenizer, $"turn1-{i}", $"{system}Question {i}: what is {i} plus {i}?", 12, greedy: true));
        }
        foreach (var request in first)
        {
            harness.Add(request);
        }
        harness.RunToCompletion();
        foreach (var request in first)
        {
            var reply = harness.Results[request.RequestId].Choices[0].TokenIds;
            harness.Add(request with
            {
                RequestId = request.RequestId.Replace("turn1", "turn2", StringComparison.Ordinal),
                PromptTokenIds = [.. request.PromptTokenIds, .. reply, .. tokenizer.Encode(" And one more question, please.")],
            });
        }
        harness.RunToCompletion();
    }

    private static void Crowd(LifecycleHarness harness, TextTokenizer tokenizer, bool greedy)
    {
        for (var i = 0; i < 6; i++)
        {
            harness.Add(Request(tokenizer, $"crowd-{i}", $"Request {i} asks the router to pick experts for a fairly long prompt, token after token, again.", 40, greedy));
        }
        harness.RunToCompletion();
    }

    private static void HostTier(LifecycleHarness harness, TextTokenizer tokenizer)
    {
        var shared = tokenizer.Encode(string.Concat(Enumerable.Repeat("Routing replay keeps every expert choice exact. ", 12))).Take(80).ToArray();
        harness.Add(new EngineRequest { RequestId = "first", PromptTokenIds = [.. shared, 11], Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 4 } });
        harness.RunToCompletion();
        for (var i = 0; i < 4; i++)
        {
            harness.Add(Request(tokenizer, $"filler-{i}", $"An unrelated request number {i} that fills the device pool with other blocks, again and again and again.", 30, greedy: true));
            harness.RunToCompletion();
        }
        harness.Add(new EngineRequest { RequestId = "second", PromptTokenIds = [.. shared, 13, 14, 15], Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 6 } });
        harness.RunToCompletion();
    }

    private static EngineRequest Request(TextTokenizer tokenizer, string id, string text, int maxTokens, bool greedy) => new()
    {
        RequestId = id,
        PromptTokenIds = tokenizer.Encode(text),
        Sampling = new SamplingParams { Temperature = greedy ? 0f : 1f, Seed = greedy ? null : (ulong)id.Length * 7919, MaxTokens = maxTokens, IgnoreEos = true },
    };

    private static void Expect(bool condition, string what, List<string> problems)
    {
        if (!condition)
        {
            problems.Add(what);
        }
    }
}
