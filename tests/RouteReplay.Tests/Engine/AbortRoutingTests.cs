using RouteReplay.Cache;
using RouteReplay.Engine;
using RouteReplay.Tests.Support;
using static RouteReplay.Tests.Support.Eventually;

namespace RouteReplay.Tests.Engine;

/// <summary>
/// An aborted choice that produced tokens returns its routing rows <c>[start, T-1)</c> wherever they are: in its device
/// blocks, in the host tier while it is swapped out, or in the rows it saved when it was preempted by recompute; byte
/// for byte the rows a plain one-at-a-time run of the same tokens returns. A choice aborted before its first token
/// returns none.
/// </summary>
public sealed class AbortRoutingTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private EngineRequest Request(string id, string text, int maxTokens, int n = 1) => new()
    {
        RequestId = id,
        PromptTokenIds = model.Tokenizer.Encode(text),
        Sampling = new SamplingParams { Temperature = 0f, MaxTokens = maxTokens, IgnoreEos = true },
        N = n,
    };

    /// <summary>The same request run alone for exactly the tokens the aborted choice produced.</summary>
    private ChoiceResult Reference(EngineRequest request, ChoiceResult aborted)
    {
        var plain = request with { RequestId = "plain", N = 1, Sampling = request.Sampling with { MaxTokens = aborted.TokenIds.Count } };
        return EngineRunner.OneAtATime(model, [plain])["plain"].Choices[0];
    }

    private double HostGiB(int blocks)
    {
        using var probe = EngineRunner.Create(model, new EngineOptions { NumBlocks = 8, SwapSpaceGiB = 0 });
        return blocks * probe.PayloadCopier.PayloadBytes / (double)(1L << 30);
    }

    private static void AssertRowsOf(ChoiceResult expected, ChoiceResult aborted)
    {
        Assert.Equal(FinishReason.Abort, aborted.FinishReason);
        Assert.Equal(expected.TokenIds, aborted.TokenIds);
        Assert.NotNull(aborted.Routing);
        Assert.Equal(expected.Routing!.Start, aborted.Routing.Start);
        Assert.Equal(expected.Routing.Data, aborted.Routing.Data);
    }

    [Fact]
    public void A_running_choice_returns_the_rows_in_its_device_blocks()
    {
        using var engine = EngineRunner.Create(model, new EngineOptions { NumBlocks = 64 });
        var runner = new EngineRunner();
        var request = Request("running", "Abort me while I decode", 200) with { RoutingStart = 2 };
        engine.AddRequest(request, runner);
        StepUntil(engine, () => engine.Stats.GeneratedTokens >= 5);

        Assert.True(engine.Abort("running"));

        var result = runner.Results["running"];
        Assert.Null(result.Error);
        var aborted = result.Choices[0];
        AssertRowsOf(Reference(request, aborted), aborted);
        var tokens = request.PromptTokenIds.Concat(aborted.TokenIds).ToArray();
        Assert.Equal(TokenPositionChannel.Expected(tokens, 2, tokens.Length - 3), result.AuxiliaryRows[0]!["token-position"]);
        Assert.Equal(0, engine.Pool.UsedBlockCount);
    }

    [Fact]
    public void A_swapped_out_choice_returns_the_rows_held_in_the_host_tier()
    {
        var options = new EngineOptions { BlockSize = 4, NumBlocks = 8, MaxNumSeqs = 2, PreemptionMode = PreemptionMode.Swap, SwapSpaceGiB = HostGiB(16) };
        using var engine = EngineRunner.Create(model, options);
        var runner = new EngineRunner();
        var first = Request("first", "One two three four", 20);
        var second = Request("second", "Five six seven eight", 20);
        engine.AddRequest(first, runner);
        engine.AddRequest(second, runner);
        StepUntil(engine, () => engine.FindSequence("second", 0) is { IsSwapped: true });
        Assert.True(engine.FindSequence("second", 0)!.OutputCount > 0);

        Assert.True(engine.Abort("second"));

        var result = runner.Results["second"];
        Assert.Null(result.Error);
        var aborted = result.Choices[0];
        AssertRowsOf(Reference(second, aborted), aborted);
        var tokens = second.PromptTokenIds.Concat(aborted.TokenIds).ToArray();
        Assert.Equal(TokenPositionChannel.Expected(tokens, 0, tokens.Length - 1), result.AuxiliaryRows[0]!["token-position"]);
        Assert.Equal(0, engine.HostTier!.UsedBlockCount);
        engine.RunToCompletion();
        Assert.Null(runner.Results["first"].Error);
    }

    [Fact]
    public void A_choice_preempted_by_recompute_returns_the_rows_it_saved()
    {
        var options = new EngineOptions { BlockSize = 4, NumBlocks = 8, MaxNumSeqs = 2, PreemptionMode = PreemptionMode.Recompute, SwapSpaceGiB = 0 };
        using var engine = EngineRunner.Create(model, options);
        var runner = new EngineRunner();
        var first = Request("first", "One two three four", 20);
        var second = Request("second", "Five six seven eight", 20);
        engine.AddRequest(first, runner);
        engine.AddRequest(second, runner);
        StepUntil(engine, () => engine.FindSequence("second", 0) is { SavedRouting: not null, BlockTable.Count: 0 });
        Assert.True(engine.FindSequence("second", 0)!.OutputCount > 0);

        Assert.True(engine.Abort("second"));

        var result = runner.Results["second"];
        Assert.Null(result.Error);
        AssertRowsOf(Reference(second, result.Choices[0]), result.Choices[0]);
        Assert.Null(result.AuxiliaryRows[0]);
    }

    [Fact]
    public void A_choice_aborted_part_way_through_its_recompute_returns_device_rows_then_saved_rows()
    {
        var options = new EngineOptions { BlockSize = 4, NumBlocks = 8, MaxNumSeqs = 2, MaxNumBatchedTokens = 4, EnablePrefixCaching = false, PreemptionMode = PreemptionMode.Recompute, SwapSpaceGiB = 0 };
        using var engine = EngineRunner.Create(model, options);
        var runner = new EngineRunner();
        var first = Request("first", "One two three four", 16);
        var second = Request("second", "Five six seven eight", 20);
        engine.AddRequest(first, runner);
        engine.AddRequest(second, runner);
        StepUntil(engine, () => engine.FindSequence("second", 0) is { SavedRouting: not null, BlockTable.Count: 0 });
        StepUntil(engine, () => engine.FindSequence("second", 0) is { BlockTable.Count: > 0 } s && s.ComputedTokens > 0 && s.ComputedTokens < s.TokenCount - 1);

        Assert.True(engine.Abort("second"));

        var result = runner.Results["second"];
        Assert.Null(result.Error);
        AssertRowsOf(Reference(second, result.Choices[0]), result.Choices[0]);
    }

    [Fact]
    public void Every_choice_of_an_aborted_request_returns_its_own_rows()
    {
        using var engine = EngineRunner.Create(model, new EngineOptions { NumBlocks = 64 });
        var runner = new EngineRunner();
        var request = Request("pair", "Two samples of one prompt", 200, n: 2);
        engine.AddRequest(request, runner);
        StepUntil(engine, () => engine.Stats.GeneratedTokens >= 8);

        Assert.True(engine.Abort("pair"));

        var result = runner.Results["pair"];
        Assert.All(result.Choices, choice => AssertRowsOf(Reference(request, choice), choice));
    }

    [Fact]
    public void A_choice_aborted_before_its_first_token_returns_no_routing_and_no_error()
    {
        using var engine = EngineRunner.Create(model, new EngineOptions { NumBlocks = 64, MaxNumBatchedTokens = 4 });
        var runner = new EngineRunner();
        engine.AddRequest(Request("early", "A prompt long enough to need several prefill chunks of four tokens", 20), runner);
        engine.Step();

        Assert.True(engine.Abort("early"));

        var result = runner.Results["early"];
        Assert.Null(result.Error);
        Assert.Empty(result.Choices[0].TokenIds);
        Assert.Null(result.Choices[0].Routing);
        Assert.Equal(FinishReason.Abort, result.Choices[0].FinishReason);
    }

    [Fact]
    public void An_aborted_row_that_was_never_written_fails_the_request_like_a_normal_finish()
    {
        using var engine = EngineRunner.Create(model, new EngineOptions { NumBlocks = 64 });
        var runner = new EngineRunner();
        engine.AddRequest(Request("broken", "Rows are checked on abort too", 200), runner);
        StepUntil(engine, () => engine.Stats.GeneratedTokens >= 3);
        var sequence = engine.FindSequence("broken", 0)!;
        engine.Pool.Channels.OfType<RoutingChannel>().Single().Row(sequence.BlockTable[0] * 16).Fill(BlockChannel.UnsetByte);

        Assert.True(engine.Abort("broken"));

        var result = runner.Results["broken"];
        Assert.IsType<RouteReplay.Routing.RoutingIntegrityException>(result.Error);
        Assert.Null(result.Choices[0].Routing);
        Assert.Equal(1, engine.Stats.RoutingIntegrityFailures);
    }
}
