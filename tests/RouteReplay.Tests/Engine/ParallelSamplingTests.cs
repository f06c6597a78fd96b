using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Engine;

/// <summary>
/// A step with many sampled rows draws them on several threads; every request's tokens, logprobs and routing equal
/// its run alone (each draw uses only its own logits and its own seeded generator).
/// </summary>
public sealed class ParallelSamplingTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    [Fact]
    public void Many_sampled_rows_in_one_step_draw_what_each_draws_alone()
    {
        var requests = Enumerable.Range(0, 8).Select(i => new EngineRequest
        {
            RequestId = $"r{i}",
            PromptTokenIds = model.Tokenizer.Encode($"Request number {i} samples its own tokens from its own seed"),
            Sampling = new SamplingParams
            {
                Temperature = 0.7f + (0.1f * (i % 4)),
                TopP = i % 3 == 0 ? 0.9f : 1f,
                TopK = i % 5 == 0 ? 20 : 0,
                Seed = (ulong)(100 + i),
                MaxTokens = 6,
                IgnoreEos = true,
            },
            Logprobs = i % 2 == 0 ? 2 : null,
            ReturnRouting = true,
        }).ToArray();
        var reference = EngineRunner.OneAtATime(model, requests);

        using var engine = EngineRunner.Create(model, new EngineOptions { NumBlocks = 256, MaxNumSeqs = 8 });
        var runner = new EngineRunner();
        foreach (var request in requests)
        {
            engine.AddRequest(request, runner);
        }
        engine.RunToCompletion();

        Assert.True(engine.Stats.Steps < 8 * 6, "the requests should share steps");
        foreach (var request in requests)
        {
            var want = reference[request.RequestId].Choices[0];
            var got = runner.Results[request.RequestId].Choices[0];
            Assert.Equal(want.TokenIds, got.TokenIds);
            Assert.Equal(want.Routing!.Data, got.Routing!.Data);
            Assert.Equal(want.Logprobs?.Select(l => (l.TokenId, l.Logprob, l.TopAlternatives.Count)), got.Logprobs?.Select(l => (l.TokenId, l.Logprob, l.TopAlternatives.Count)));
        }
    }
}
