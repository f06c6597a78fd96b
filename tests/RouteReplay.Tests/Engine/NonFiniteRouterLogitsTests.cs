using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Engine;

/// <summary>
/// A token whose router logits are not finite (here: a checkpoint whose embedding row of one token is +Inf) fails its
/// own request with a clear error instead of returning meaningless routing; requests sharing its steps are unchanged.
/// </summary>
public sealed class NonFiniteRouterLogitsTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>, IDisposable
{
    private const int Poisoned = 40000;

    private readonly string _poisoned = PoisonedCheckpoint.Write(model.Directory, Poisoned);

    private EngineRequest Request(string id, string text, int maxTokens, bool doomed = false)
    {
        var prompt = model.Tokenizer.Encode(text);
        return new()
        {
            RequestId = id,
            PromptTokenIds = doomed ? [.. prompt, Poisoned, .. prompt] : prompt,
            Sampling = new SamplingParams { Temperature = 0f, MaxTokens = maxTokens, IgnoreEos = true },
            ReturnRouting = true,
        };
    }

    [Fact]
    public void Only_the_request_whose_router_logits_are_not_finite_fails()
    {
        var neighbour = Request("neighbour", "This request shares its steps with a poisoned one and must not notice", 12);
        var later = Request("later", "This request starts after the failure", 8);
        var doomed = Request("doomed", "A poisoned token sits in this prompt", 8, doomed: true);
        var options = new EngineOptions { NumBlocks = 64, MaxNumSeqs = 4, WeightsVersion = "poisoned" };
        Dictionary<string, RequestResult> reference;
        using (var alone = LoadedModel.LoadCpu(_poisoned, options with { EnablePrefixCaching = false }))
        {
            var runner = new EngineRunner();
            foreach (var request in new[] { neighbour, later })
            {
                alone.AddRequest(request, runner);
                alone.RunToCompletion();
            }
            reference = runner.Results;
        }

        using var engine = LoadedModel.LoadCpu(_poisoned, options);
        var results = new EngineRunner();
        engine.AddRequest(neighbour, results);
        engine.Step();
        engine.AddRequest(doomed, results);
        engine.AddRequest(later, results);
        engine.RunToCompletion();

        var failed = results.Results["doomed"];
        var error = Assert.IsType<NonFiniteRouterLogitsException>(failed.Error);
        Assert.Contains("not finite", error.Message);
        Assert.All(failed.Choices, c => Assert.Null(c.Routing));
        foreach (var id in new[] { "neighbour", "later" })
        {
            var result = results.Results[id];
            Assert.Null(result.Error);
            Assert.Equal(reference[id].Choices[0].TokenIds, result.Choices[0].TokenIds);
            Assert.Equal(reference[id].Choices[0].Routing!.Data, result.Choices[0].Routing!.Data);
        }
        Assert.Equal(1, engine.Stats.NonFiniteRouterLogitFailures);
        Assert.Equal(0, engine.Stats.StepFailures);
        Assert.Equal(0, engine.Pool.UsedBlockCount);
        Assert.Equal(engine.Pool.NumBlocks, engine.Pool.FreeBlockCount);
    }

    public void Dispose() => Directory.Delete(_poisoned, recursive: true);
}
