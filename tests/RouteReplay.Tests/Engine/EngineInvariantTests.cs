using RouteReplay.Engine;
using RouteReplay.Model;
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
    private List<EngineRequest> Workload(bool greedy, Dictionary<string, RequestResult>? firstTurns)
    {
        var tokenizer = model.Tokenizer;
        var system = "You are RouteReplay's test assistant. Answer briefly, cite the expert that routed each token, and never repeat yourself.";
        SamplingParams Sampling(ulong seed, int maxTokens) => greedy
            ? new SamplingParams { Temperature = 0f, MaxTokens = maxTokens }
            : new SamplingParams { Temperature = 6f, TopK = 50, TopP = 0.95f, Seed = seed, MaxTokens = maxTokens };
        var requests = new List<EngineRequest>();
        string[] questions = ["What is 2+2?", "Name a prime.", "Why is the sky blue?", "Define entropy.", "Hello!", "Count to five."];
        for (var i = 0; i < questions.Length; i++)
        {
            var text = tokenizer.ApplyChatTemplate([new ChatMessage("system", system), new ChatMessage("user", questions[i])]);
            requests.Add(new EngineRequest { RequestId = $"shared-{i}", PromptTokenIds = tokenizer.Encode(text), Sampling = Sampling((ulong)i, 12 + i) });
        }
        foreach (var length in new[] { 31, 32, 33, 48, 49 })
        {
            var ids = tokenizer.Encode(string.Concat(Enumerable.Repeat("the router picks experts for every token ", 12))).Take(length).ToArray();
            requests.Add(new EngineRequest { RequestId = $"boundary-{length}", PromptTokenIds = ids, Sampling = Sampling((ulong)length, 17) });
        }
        var sampled = tokenizer.Encode("Write three different endings for this story: the engineer opened the door and saw");
        requests.Add(new EngineRequest { RequestId = "n3", PromptTokenIds = sampled, N = 3, Sampling = Sampling(100, 10) });
        for (var i = 0; i < 2; i++)
        {
            var turn1 = tokenizer.Encode(tokenizer.ApplyChatTemplate([new ChatMessage("system", system), new ChatMessage("user", $"Start a story about expert number {i}.")]));
            requests.Add(new EngineRequest { RequestId = $"turn1-{i}", PromptTokenIds = turn1, Sampling = Sampling(200 + (ulong)i, 20) });
            if (firstTurns is not null)
            {
                var previous = firstTurns[$"turn1-{i}"];
                var extended = turn1.Concat(previous.Choices[0].TokenIds)
                    .Concat(tokenizer.Encode("<|im_end|>\n<|im_start|>user\nContinue the story.<|im_end|>\n<|im_start|>assistant\n")).ToArray();
                requests.Add(new EngineRequest
                {
                    RequestId = $"turn2-{i}",
                    PromptTokenIds = extended,
                    Sampling = Sampling(300 + (ulong)i, 15),
                    RoutingStart = turn1.Count + previous.Choices[0].TokenIds.Count - 1,
                });
            }
        }
        return requests;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Batched_chunked_cached_and_evicting_runs_equal_one_at_a_time_byte_for_byte(bool greedy)
    {
        var firstTurns = EngineRunner.OneAtATime(model, Workload(greedy, null));
        var workload = Workload(greedy, firstTurns);
        var reference = EngineRunner.OneAtATime(model, workload);

        using var engine = EngineRunner.Create(model, new EngineOptions { MaxNumSeqs = 4, MaxNumBatchedTokens = 24, NumBlocks = 24 });
        var runner = new EngineRunner();
        foreach (var request in workload)
        {
            engine.AddRequest(request, runner);
        }
        engine.RunToCompletion();

        Assert.Equal(reference.Keys.Order(), runner.Results.Keys.Order());
        foreach (var request in workload)
        {
            var expected = reference[request.RequestId];
            var actual = runner.Results[request.RequestId];
            Assert.Null(expected.Error);
            Assert.Null(actual.Error);
            for (var c = 0; c < request.N; c++)
            {
                Assert.Equal(expected.Choices[c].TokenIds, actual.Choices[c].TokenIds);
                Assert.Equal(expected.Choices[c].FinishReason, actual.Choices[c].FinishReason);
                Assert.Equal(expected.Choices[c].Routing!.Data, actual.Choices[c].Routing!.Data);
                Assert.Equal(request.RoutingStart, actual.Choices[c].Routing!.Start);
                var all = request.PromptTokenIds.Concat(actual.Choices[c].TokenIds).ToArray();
                Assert.Equal(all.Length - 1 - request.RoutingStart, actual.Choices[c].Routing!.RowCount);
                Assert.Equal(TokenPositionChannel.Expected(all, request.RoutingStart, all.Length - 1 - request.RoutingStart), actual.AuxiliaryRows[c]!["token-position"]);
            }
        }
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
