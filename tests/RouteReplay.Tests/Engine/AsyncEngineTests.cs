using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Engine;

/// <summary>
/// Request ids are chosen by clients (SGLang's <c>rid</c>) and reused once a request has finished: a stream aborts its
/// own request, never a newer one that took the same id.
/// </summary>
public sealed class AsyncEngineTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private EngineRequest Request(string id, int maxTokens) => new()
    {
        RequestId = id,
        PromptTokenIds = model.Tokenizer.Encode("Client-chosen ids come back"),
        Sampling = new SamplingParams { Temperature = 0f, MaxTokens = maxTokens, IgnoreEos = true },
    };

    private static async Task<RequestResult> ReadToEndAsync(AsyncEngine.RequestStream stream)
    {
        await foreach (var item in stream.ReadAllAsync())
        {
            if (item is RequestFinished finished)
            {
                return finished.Result;
            }
        }
        throw new InvalidOperationException("the stream ended without a result");
    }

    private static Task WaitUntilAsync(AsyncEngine engine, Func<LlmEngine, bool> condition) =>
        Eventually.WaitUntilAsync(() => engine.InvokeAsync(condition), "the engine reached the expected state");

    [Fact]
    public async Task Disposing_a_stream_whose_finish_was_never_read_leaves_a_newer_request_with_the_same_id_running()
    {
        await using var engine = new AsyncEngine(EngineRunner.Create(model, new EngineOptions { NumBlocks = 256 }));
        var first = await engine.StartAsync(Request("reused", 2));
        await WaitUntilAsync(engine, e => !e.HasUnfinishedRequests);
        var second = await engine.StartAsync(Request("reused", 40));

        first.Dispose();

        var result = await ReadToEndAsync(second);
        Assert.Equal(FinishReason.Length, result.Choices[0].FinishReason);
        Assert.Equal(40, result.Choices[0].TokenIds.Count);
        Assert.Equal(0, await engine.InvokeAsync(e => e.Stats.RequestsAborted));
    }

    [Fact]
    public async Task Disposing_an_unread_stream_of_a_running_request_aborts_that_request_and_frees_its_blocks()
    {
        await using var engine = new AsyncEngine(EngineRunner.Create(model, new EngineOptions { NumBlocks = 256 }));
        var stream = await engine.StartAsync(Request("abandoned", 3000));
        await WaitUntilAsync(engine, e => e.Stats.GeneratedTokens > 0);

        stream.Dispose();

        await WaitUntilAsync(engine, e => !e.HasUnfinishedRequests);
        Assert.Equal(1, await engine.InvokeAsync(e => e.Stats.RequestsAborted));
        Assert.Equal(0, await engine.InvokeAsync(e => e.Pool.UsedBlockCount));
        RequestFinished? finish = null;
        while (stream.Reader.TryRead(out var item))
        {
            finish = item as RequestFinished ?? finish;
        }
        Assert.Equal(FinishReason.Abort, finish!.Result.Choices[0].FinishReason);
    }

    [Fact]
    public async Task A_second_live_request_with_the_same_id_is_rejected_naming_the_id_and_the_first_keeps_running()
    {
        await using var engine = new AsyncEngine(EngineRunner.Create(model, new EngineOptions { NumBlocks = 256 }));
        using var first = await engine.StartAsync(Request("twice", 30));
        var error = await Assert.ThrowsAsync<ArgumentException>(() => engine.StartAsync(Request("twice", 30)));
        Assert.Contains("'twice'", error.Message);
        Assert.Equal("request_id", error.ParamName);
        var result = await ReadToEndAsync(first);
        Assert.Equal(FinishReason.Length, result.Choices[0].FinishReason);
    }

    [Fact]
    public async Task Abort_by_id_ends_the_live_request_with_that_id()
    {
        await using var engine = new AsyncEngine(EngineRunner.Create(model, new EngineOptions { NumBlocks = 256 }));
        var old = await engine.StartAsync(Request("by-id", 1));
        Assert.Equal(FinishReason.Length, (await ReadToEndAsync(old)).Choices[0].FinishReason);
        var live = await engine.StartAsync(Request("by-id", 3000));
        await WaitUntilAsync(engine, e => e.Stats.GeneratedTokens > 1);

        engine.Abort("by-id");

        var result = await ReadToEndAsync(live);
        Assert.Equal(FinishReason.Abort, result.Choices[0].FinishReason);
        Assert.True(result.Choices[0].TokenIds.Count < 3000);
    }
}
