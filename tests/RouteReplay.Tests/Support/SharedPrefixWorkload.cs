using System.Collections.Concurrent;
using RouteReplay.Cache;
using RouteReplay.Engine;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.Tests.Support;

/// <summary>
/// A workload with heavy shared prefixes: one system prompt shared by many chats, prompts ending exactly on and just
/// past block boundaries, n = 3 samples of one prompt, and second turns that extend first turns by their outputs
/// (built from a reference run's first turns, passing the routing rows the client already holds).
/// </summary>
public static class SharedPrefixWorkload
{
    public static List<EngineRequest> Build(TextTokenizer tokenizer, bool greedy, Dictionary<string, RequestResult>? firstTurns)
    {
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

    private static readonly ConcurrentDictionary<(string Weights, bool Greedy, bool SecondTurns), Lazy<(List<EngineRequest>, Dictionary<string, RequestResult>)>> References = new();

    /// <summary>Builds the workload in two passes, the second extending the first turns of a reference run.</summary>
    public static List<EngineRequest> WithSecondTurns(TinyModelFixture model, bool greedy) => WithReference(model, greedy).Workload;

    /// <summary>
    /// The workload (first turns only, or with second turns) and its one-request-at-a-time reference run, computed once
    /// per process for a model's weights: the reference is a pure function of the weights and the workload, and every
    /// test reads it without changing it. With second turns only the second turns are run: the first turns are the
    /// very requests of the first-turns workload, and one at a time with prefix caching off no request sees another,
    /// so their reference is the first-turns reference.
    /// </summary>
    public static (List<EngineRequest> Workload, Dictionary<string, RequestResult> Reference) WithReference(TinyModelFixture model, bool greedy, bool secondTurns = true)
    {
        var key = (ModelFingerprint.HashWeights(model.Directory), greedy, secondTurns);
        return References.GetOrAdd(key, _ => new Lazy<(List<EngineRequest>, Dictionary<string, RequestResult>)>(() =>
        {
            if (!secondTurns)
            {
                var firstTurns = Build(model.Tokenizer, greedy, null);
                return (firstTurns, EngineRunner.OneAtATime(model, firstTurns));
            }
            var (first, firstReference) = WithReference(model, greedy, secondTurns: false);
            var workload = Build(model.Tokenizer, greedy, firstReference);
            var reused = workload.Where(r => firstReference.ContainsKey(r.RequestId)).ToList();
            Assert.Equal(first.Count, reused.Count);
            foreach (var (request, same) in reused.Zip(first))
            {
                Assert.Equal(same.RequestId, request.RequestId);
                Assert.Equal(same.PromptTokenIds, request.PromptTokenIds);
                Assert.Equal(same.Sampling, request.Sampling);
                Assert.Equal((same.N, same.RoutingStart), (request.N, request.RoutingStart));
            }
            var reference = new Dictionary<string, RequestResult>(firstReference);
            foreach (var (id, result) in EngineRunner.OneAtATime(model, workload.Except(reused)))
            {
                reference.Add(id, result);
            }
            return (workload, reference);
        })).Value;
    }

    /// <summary>Asserts tokens, finish reasons, routing rows and test-channel rows equal the reference's, byte for byte.</summary>
    public static void AssertIdentical(IReadOnlyList<EngineRequest> workload, Dictionary<string, RequestResult> reference, Dictionary<string, RequestResult> actual)
    {
        Assert.Equal(reference.Keys.Order(), actual.Keys.Order());
        foreach (var request in workload)
        {
            var expected = reference[request.RequestId];
            var result = actual[request.RequestId];
            Assert.Null(expected.Error);
            Assert.Null(result.Error);
            for (var c = 0; c < request.N; c++)
            {
                Assert.Equal(expected.Choices[c].TokenIds, result.Choices[c].TokenIds);
                Assert.Equal(expected.Choices[c].FinishReason, result.Choices[c].FinishReason);
                Assert.Equal(expected.Choices[c].Routing!.Data, result.Choices[c].Routing!.Data);
                Assert.Equal(request.RoutingStart, result.Choices[c].Routing!.Start);
                var all = request.PromptTokenIds.Concat(result.Choices[c].TokenIds).ToArray();
                Assert.Equal(all.Length - 1 - request.RoutingStart, result.Choices[c].Routing!.RowCount);
                Assert.Equal(TokenPositionChannel.Expected(all, request.RoutingStart, all.Length - 1 - request.RoutingStart), result.AuxiliaryRows[c]!["token-position"]);
            }
        }
    }
}
