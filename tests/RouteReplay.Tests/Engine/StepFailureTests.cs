using RouteReplay.Backends;
using RouteReplay.Cache;
using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Engine;

/// <summary>
/// A step that throws fails the requests it ran, with a clear error and their blocks freed, and the engine serves the
/// rest unchanged; when the failure leaves the block accounting broken, the engine stops instead of serving on.
/// </summary>
public sealed class StepFailureTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    /// <summary>A token id only the doomed requests' prompts hold: the fault fires in the first step that runs it.</summary>
    private const int Marker = 40000;

    private static readonly EngineOptions Options = new() { NumBlocks = 32, MaxNumSeqs = 2, SwapSpaceGiB = 0 };

    private EngineRequest Request(string id, string text, int maxTokens, bool doomed = false)
    {
        var prompt = model.Tokenizer.Encode(text);
        return new()
        {
            RequestId = id,
            PromptTokenIds = doomed ? [.. prompt, Marker] : prompt,
            Sampling = new SamplingParams { Temperature = 0f, MaxTokens = maxTokens, IgnoreEos = true },
        };
    }

    public static TheoryData<string> Places => new() { "forward", "after-forward", "capture", "sink" };

    [Theory]
    [MemberData(nameof(Places))]
    public void A_step_that_throws_fails_its_own_requests_and_the_engine_serves_the_rest(string place)
    {
        var doomed = Request("doomed", "This request meets a fault", 6, doomed: true);
        var neighbour = Request("neighbour", "This request shares the failing step, and its prompt is long enough to fill one whole block of the cache", 30);
        var later = Request("later", "This request waits for a free slot", 5);
        var reference = EngineRunner.OneAtATime(model, [neighbour, later]);

        using var engine = place switch
        {
            "capture" => LoadedModel.LoadCpu(model.Directory, Options with { WeightsVersion = "test" }, [new TokenPositionChannel(32, 16), new ThrowingChannel(32, 16)]),
            "sink" => EngineRunner.Create(model, Options),
            _ => EngineRunner.CreateWrapped(model, Options, inner => new FaultyBackend(inner, FaultyBackend.OnToken(Marker), afterForward: place == "after-forward")),
        };
        var runner = new EngineRunner();
        engine.AddRequest(neighbour, runner);
        engine.Step();
        engine.AddRequest(doomed, place == "sink" ? new ThrowingSink(runner) : runner);
        engine.AddRequest(later, runner);
        engine.Step();

        Assert.Equal(1, engine.Stats.StepFailures);
        Assert.Equal(2, engine.Stats.RequestsFailed);
        foreach (var id in new[] { "doomed", "neighbour" })
        {
            var failed = runner.Results[id];
            var error = Assert.IsType<StepFailedException>(failed.Error);
            Assert.StartsWith("the engine step running this request failed: simulated fault", error.Message);
            Assert.All(failed.Choices, c => Assert.Null(c.Routing));
        }
        Assert.Equal(0, engine.Pool.UsedBlockCount);
        Assert.False(runner.Results.ContainsKey("later"));

        engine.RunToCompletion();
        engine.AddRequest(neighbour with { RequestId = "again" }, runner);
        engine.RunToCompletion();
        AssertSameAs(reference["later"], runner.Results["later"]);
        AssertSameAs(reference["neighbour"], runner.Results["again"]);
        Assert.Equal(16, runner.Results["again"].Usage.CachedPromptTokens);
        Assert.Equal(1, engine.Stats.StepFailures);
        Assert.Equal(0, engine.Pool.UsedBlockCount);
        Assert.Equal(engine.Pool.NumBlocks, engine.Pool.FreeBlockCount);
    }

    [Fact]
    public void Every_choice_of_a_failed_request_ends_and_frees_its_blocks_even_those_not_in_the_step()
    {
        using var engine = EngineRunner.CreateWrapped(model, Options with { MaxNumSeqs = 2 }, inner => new FaultyBackend(inner, FaultyBackend.OnForward(3)));
        var runner = new EngineRunner();
        engine.AddRequest(Request("three", "Three choices share this prompt", 20) with { N = 3 }, runner);
        engine.Step();
        engine.Step();
        Assert.Equal(1, engine.WaitingCount);
        engine.Step();

        var result = runner.Results["three"];
        Assert.IsType<StepFailedException>(result.Error);
        Assert.Equal(3, result.Choices.Count);
        Assert.Equal(0, engine.WaitingCount);
        Assert.Equal(0, engine.RunningCount);
        Assert.Equal(0, engine.Pool.UsedBlockCount);
        Assert.False(engine.HasUnfinishedRequests);
    }

    public static TheoryData<string> Corruptions => new() { "double-free", "leaked-block" };

    /// <summary>
    /// A block freed behind the engine's back makes freeing the failed requests throw; a block referenced by no request
    /// fails the accounting check. Either way the engine cannot trust its pool: every request fails and it stops.
    /// </summary>
    [Theory]
    [MemberData(nameof(Corruptions))]
    public void A_failed_step_that_leaves_the_block_accounting_broken_stops_the_engine(string corruption)
    {
        var faultyStep = corruption == "double-free" ? 2 : 1;
        using var engine = EngineRunner.CreateWrapped(model, Options with { MaxNumSeqs = 1 }, inner => new FaultyBackend(inner, FaultyBackend.OnForward(faultyStep)));
        var runner = new EngineRunner();
        engine.AddRequest(Request("doomed", "This request meets a fault", 6), runner);
        engine.AddRequest(Request("waiting", "This request never gets its turn", 6), runner);
        var doomed = engine.FindSequence("doomed", 0)!;
        if (corruption == "double-free")
        {
            engine.Step();
            engine.Pool.Release(doomed.BlockTable[0]);
        }
        else
        {
            engine.Pool.Allocate();
        }

        var stop = Assert.Throws<InvalidOperationException>(() => engine.Step());
        Assert.Contains("simulated fault", stop.Message);
        Assert.Contains("could not be restored", stop.Message);
        Assert.Equal(1, engine.Stats.StepFailures);
        Assert.NotNull(runner.Results["doomed"].Error);
        Assert.Same(stop, runner.Results["waiting"].Error);
        Assert.False(engine.HasUnfinishedRequests);
        Assert.Contains("has stopped", Assert.Throws<InvalidOperationException>(() => engine.Step()).Message);
    }

    [Fact]
    public async Task The_async_engine_keeps_its_step_loop_after_a_failed_step()
    {
        await using var engine = new AsyncEngine(EngineRunner.CreateWrapped(model, Options, inner => new FaultyBackend(inner, FaultyBackend.OnToken(Marker), afterForward: true)));
        var failed = await engine.GenerateAsync(Request("doomed", "This request meets a fault", 6, doomed: true));
        Assert.IsType<StepFailedException>(failed.Error);
        var ok = await engine.GenerateAsync(Request("fine", "This one runs after it", 6));
        Assert.Null(ok.Error);
        Assert.Equal(6, ok.Choices[0].TokenIds.Count);
        Assert.Null(engine.Fault);
        Assert.Equal((1L, 0), await engine.InvokeAsync(e => (e.Stats.StepFailures, e.Pool.UsedBlockCount)));
    }

    private static void AssertSameAs(RequestResult expected, RequestResult actual)
    {
        Assert.Null(actual.Error);
        Assert.Equal(expected.Choices[0].TokenIds, actual.Choices[0].TokenIds);
        Assert.Equal(expected.Choices[0].Routing!.Data, actual.Choices[0].Routing!.Data);
    }

    /// <summary>A channel whose capture throws for the marker token, as a failing storage or transfer write would.</summary>
    private sealed class ThrowingChannel(int numBlocks, int blockSize) : BlockChannel("throwing", 1, numBlocks, blockSize)
    {
        protected override void WriteStepRow(ForwardBatch batch, int token, Span<byte> destination)
        {
            if (batch.TokenIds[token] == Marker)
            {
                throw new InvalidOperationException("simulated fault in a channel's capture");
            }
            destination[0] = 0;
        }
    }

    /// <summary>A sink whose delta handler throws; its result still reaches the runner.</summary>
    private sealed class ThrowingSink(EngineRunner runner) : IRequestSink
    {
        public void OnDelta(StreamDelta delta) => throw new InvalidOperationException("simulated fault in a sink");

        public void OnFinished(RequestResult result) => runner.OnFinished(result);
    }
}
