using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Engine;

/// <summary>
/// A backend that returns each logit row's argmax (as the CUDA backend does on the device) lets greedy steps skip their
/// logit rows: greedy requests take the argmax, and a step asks for its logits whenever a request in it samples or
/// wants logprobs. Tokens and logprobs equal the plain CPU engine's.
/// </summary>
public sealed class DeviceArgMaxTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private EngineRequest Request(string id, string text, float temperature, int? logprobs = null) => new()
    {
        RequestId = id,
        PromptTokenIds = model.Tokenizer.Encode(text),
        Sampling = new SamplingParams { Temperature = temperature, Seed = 7, MaxTokens = 12, IgnoreEos = true },
        Logprobs = logprobs,
        ReturnRouting = true,
    };

    [Fact]
    public void Greedy_steps_use_the_argmax_and_steps_that_sample_or_score_get_their_logits()
    {
        EngineRequest[] requests =
        [
            Request("greedy", "Greedy decoding needs only the largest logit", 0f),
            Request("greedy-2", "Another greedy request in the same steps", 0f),
            Request("sampled", "A sampled request needs every logit", 0.9f),
            Request("scored", "A greedy request with logprobs needs them too", 0f, logprobs: 3),
        ];
        var reference = EngineRunner.OneAtATime(model, requests);

        ArgMaxBackend? backend = null;
        var options = new EngineOptions { NumBlocks = 128, MaxNumSeqs = 4 };
        using var greedyOnly = EngineRunner.CreateWrapped(model, options, inner => backend = new ArgMaxBackend(inner));
        var greedyRuns = new EngineRunner();
        greedyOnly.AddRequest(requests[0], greedyRuns);
        greedyOnly.AddRequest(requests[1], greedyRuns);
        greedyOnly.RunToCompletion();
        Assert.True(backend!.StepsWithoutLogits > 0, "greedy-only steps should skip their logit rows");
        Assert.Equal(0, backend.StepsWithLogits);

        using var mixed = EngineRunner.CreateWrapped(model, options, inner => backend = new ArgMaxBackend(inner));
        var mixedRuns = new EngineRunner();
        foreach (var request in requests)
        {
            mixed.AddRequest(request, mixedRuns);
        }
        mixed.RunToCompletion();
        Assert.True(backend.StepsWithLogits > 0);

        foreach (var (id, result) in greedyRuns.Results.Concat(mixedRuns.Results))
        {
            var want = reference[id].Choices[0];
            var got = result.Choices[0];
            Assert.Null(result.Error);
            Assert.Equal(want.TokenIds, got.TokenIds);
            Assert.Equal(want.Routing!.Data, got.Routing!.Data);
            Assert.Equal(want.Logprobs?.Select(l => (l.TokenId, l.Logprob)), got.Logprobs?.Select(l => (l.TokenId, l.Logprob)));
        }
    }
}
