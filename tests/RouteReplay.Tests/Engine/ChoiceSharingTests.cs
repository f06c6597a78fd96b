using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Engine;

/// <summary>
/// The choices of an n &gt; 1 request share the prompt's full blocks: the first choice computes them, the others take
/// references on them, and only the block holding the last prompt token is computed by each choice.
/// </summary>
public sealed class ChoiceSharingTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private const int PromptLength = 40;
    private const int MaxTokens = 5;

    private EngineRequest ThreeChoices() => new()
    {
        RequestId = "n3",
        PromptTokenIds = [.. model.Tokenizer.Encode(string.Concat(Enumerable.Repeat("Write three endings for the story. ", 10))).Take(PromptLength)],
        N = 3,
        Sampling = new SamplingParams { Temperature = 1f, Seed = 3, MaxTokens = MaxTokens, IgnoreEos = true },
    };

    [Fact]
    public void The_prompt_blocks_are_computed_once_and_held_by_every_choice()
    {
        using var engine = EngineRunner.Create(model, new EngineOptions { NumBlocks = 32, MaxNumSeqs = 3, SwapSpaceGiB = 0 });
        var runner = new EngineRunner();
        engine.AddRequest(ThreeChoices(), runner);
        engine.Step();
        Assert.Equal(PromptLength, engine.Stats.ComputedTokens);
        Assert.Equal(2, engine.WaitingCount);
        engine.Step();

        var choices = Enumerable.Range(0, 3).Select(c => engine.FindSequence("n3", c)!).ToArray();
        Assert.All(choices, c => Assert.Equal(SequenceStatus.Running, c.Status));
        for (var b = 0; b < 2; b++)
        {
            var shared = choices[0].BlockTable[b];
            Assert.All(choices, c => Assert.Equal(shared, c.BlockTable[b]));
            Assert.Equal(3, engine.Pool.RefCount(shared));
        }
        Assert.Equal(3, choices.Select(c => c.BlockTable[2]).Distinct().Count());
        Assert.All(choices, c => Assert.Equal(1, engine.Pool.RefCount(c.BlockTable[2])));
        Assert.Equal(2 * 32, engine.Stats.PrefixCacheHitTokens);
        Assert.Equal(PromptLength + 1 + (2 * (PromptLength - 32)), engine.Stats.ComputedTokens);

        engine.RunToCompletion();
        var result = runner.Results["n3"];
        Assert.Null(result.Error);
        Assert.Equal(PromptLength + (2 * (PromptLength - 32)) + (3 * (MaxTokens - 1)), engine.Stats.ComputedTokens);
        var rowBytes = engine.RoutingFormat.RowBytes;
        var promptRows = result.Choices[0].Routing!.Data.AsSpan(0, 32 * rowBytes).ToArray();
        Assert.All(result.Choices, c => Assert.Equal(promptRows, c.Routing!.Data.AsSpan(0, 32 * rowBytes).ToArray()));
        Assert.Equal(0, engine.Pool.UsedBlockCount);
    }

    [Fact]
    public void Without_prefix_caching_every_choice_computes_its_own_prompt()
    {
        using var engine = EngineRunner.Create(model, new EngineOptions { NumBlocks = 32, MaxNumSeqs = 3, SwapSpaceGiB = 0, EnablePrefixCaching = false });
        var runner = new EngineRunner();
        engine.AddRequest(ThreeChoices(), runner);
        engine.Step();

        var choices = Enumerable.Range(0, 3).Select(c => engine.FindSequence("n3", c)!).ToArray();
        Assert.Equal(9, choices.SelectMany(c => c.BlockTable).Distinct().Count());
        engine.RunToCompletion();
        Assert.Null(runner.Results["n3"].Error);
        Assert.Equal((3 * PromptLength) + (3 * (MaxTokens - 1)), engine.Stats.ComputedTokens);
        Assert.Equal(0, engine.Stats.PrefixCacheHitTokens);
    }
}
