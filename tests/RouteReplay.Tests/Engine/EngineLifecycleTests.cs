using RouteReplay.Backends;
using RouteReplay.Engine;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Routing;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Engine;

public sealed class EngineLifecycleTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private EngineRequest Request(string id, string text, int maxTokens = 8) =>
        new() { RequestId = id, PromptTokenIds = model.Tokenizer.Encode(text), Sampling = new SamplingParams { Temperature = 0f, MaxTokens = maxTokens, IgnoreEos = true } };

    [Fact]
    public void A_routing_row_the_forward_never_wrote_fails_the_request_loudly()
    {
        var options = new EngineOptions { NumBlocks = 32 }.Validate();
        var checkpoint = Checkpoint.Open(model.Directory);
        var inner = RouteReplay.Backends.Cpu.CpuBackend.Load(checkpoint, options.ResolvedNumBlocks, options.BlockSize);
        checkpoint.Dispose();
        var faulty = new SkipRoutingWrite(inner, position: 3);
        using var engine = new LlmEngine(faulty, model.Tokenizer, [], options, "test");
        var runner = new EngineRunner();
        engine.AddRequest(Request("victim", "The router chooses experts for every token"), runner);
        engine.RunToCompletion();
        var result = runner.Results["victim"];
        Assert.IsType<RoutingIntegrityException>(result.Error);
        Assert.Contains("never written", result.Error!.Message);
        Assert.Null(result.Choices[0].Routing);
        Assert.Equal(1, engine.Stats.RoutingIntegrityFailures);
        Assert.Equal(0, engine.Pool.UsedBlockCount);
    }

    [Fact]
    public void Abort_frees_every_block_and_reports_abort()
    {
        using var engine = EngineRunner.Create(model, new EngineOptions { NumBlocks = 32, MaxNumBatchedTokens = 8 });
        var runner = new EngineRunner();
        engine.AddRequest(Request("a", "A long prompt that takes several chunks to prefill because the budget is tiny", 50), runner);
        engine.AddRequest(Request("b", "Another request waiting behind it"), runner);
        engine.Step();
        engine.Step();
        Assert.True(engine.Pool.UsedBlockCount > 0);
        Assert.True(engine.Abort("a"));
        Assert.Equal(FinishReason.Abort, runner.Results["a"].Choices[0].FinishReason);
        engine.RunToCompletion();
        Assert.Null(runner.Results["b"].Error);
        Assert.Equal(0, engine.Pool.UsedBlockCount);
        Assert.False(engine.Abort("a"));
    }

    [Fact]
    public void A_request_that_can_never_fit_is_rejected_at_once()
    {
        using var engine = EngineRunner.Create(model, new EngineOptions { NumBlocks = 4, MaxModelLen = 4096 });
        var error = Assert.Throws<ArgumentException>(() => engine.AddRequest(Request("big", "Hello", 200), new EngineRunner()));
        Assert.Contains("KV blocks", error.Message);
        var tooLong = new EngineRequest { RequestId = "long", PromptTokenIds = Enumerable.Repeat(9707, 5000).ToArray() };
        Assert.Contains("max_model_len", Assert.Throws<ArgumentException>(() => engine.AddRequest(tooLong, new EngineRunner())).Message);
    }

    [Fact]
    public void Deltas_concatenate_to_the_final_text_and_logprobs_are_normalized()
    {
        using var engine = EngineRunner.Create(model, new EngineOptions { NumBlocks = 32 });
        var runner = new EngineRunner();
        engine.AddRequest(Request("s", "Stream me some text, please", 12) with { Logprobs = 3 }, runner);
        engine.RunToCompletion();
        var result = runner.Results["s"];
        var deltas = runner.Deltas["s"];
        Assert.Equal(result.Choices[0].Text, string.Concat(deltas.Select(d => d.Text)));
        Assert.Equal(result.Choices[0].TokenIds, deltas.SelectMany(d => d.TokenIds).ToArray());
        var logprobs = result.Choices[0].Logprobs!;
        Assert.Equal(12, logprobs.Count);
        Assert.All(logprobs, l =>
        {
            Assert.Equal(3, l.TopAlternatives.Count);
            Assert.Equal(l.TopAlternatives[0].TokenId, l.TokenId);
            Assert.True(l.Logprob <= 0);
            Assert.True(l.TopAlternatives[0].Logprob >= l.TopAlternatives[1].Logprob);
        });
    }

    [Fact]
    public void A_stop_string_cuts_the_text_before_it_in_the_result_and_in_the_stream()
    {
        using var engine = EngineRunner.Create(model, new EngineOptions { NumBlocks = 32 });
        var free = new EngineRunner();
        engine.AddRequest(Request("free", "Tell me about routing", 12), free);
        engine.RunToCompletion();
        var full = free.Results["free"].Choices[0].Text;
        Assert.True(full.Length >= 6, full);
        var stop = full.Substring(full.Length / 2, 2);
        var expected = full[..full.IndexOf(stop, StringComparison.Ordinal)];

        var runner = new EngineRunner();
        var request = Request("stopped", "Tell me about routing", 12);
        engine.AddRequest(request with { Sampling = request.Sampling with { Stop = [stop, "never-appears"] } }, runner);
        engine.RunToCompletion();
        var choice = runner.Results["stopped"].Choices[0];
        Assert.Equal(expected, choice.Text);
        Assert.Equal(FinishReason.Stop, choice.FinishReason);
        Assert.Equal(expected, string.Concat(runner.Deltas["stopped"].Select(d => d.Text)));
        Assert.Equal(request.PromptTokenIds.Count + choice.TokenIds.Count - 1, choice.Routing!.RowCount);
    }

    [Fact]
    public async Task The_async_engine_streams_and_cancelling_the_reader_aborts()
    {
        await using var engine = new AsyncEngine(EngineRunner.Create(model, new EngineOptions { NumBlocks = 32 }));
        var result = await engine.GenerateAsync(Request("x", "Hello there", 6));
        Assert.Equal(6, result.Choices[0].TokenIds.Count);
        Assert.Equal(result.PromptTokenIds.Count + 6 - 1, result.Choices[0].Routing!.RowCount);

        using var cancel = new CancellationTokenSource();
        var seen = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var item in engine.Generate(Request("y", "Keep going for a long while", 400), cancel.Token))
            {
                if (++seen == 3)
                {
                    await cancel.CancelAsync();
                }
            }
        });
        var used = await engine.InvokeAsync(e => (e.Pool.UsedBlockCount, e.HasUnfinishedRequests));
        Assert.Equal((0, false), used);
    }

    /// <summary>A backend that "forgets" to write one position's routing row, as a buggy kernel might.</summary>
    private sealed class SkipRoutingWrite(IModelBackend inner, int position) : DelegatingBackend(inner)
    {
        public override void Forward(ForwardBatch batch)
        {
            Inner.Forward(batch);
            for (var t = 0; t < batch.TokenCount; t++)
            {
                if (batch.Positions[t] == position)
                {
                    batch.RoutingFormat.Reset(batch.RoutingRow(t));
                }
            }
        }
    }
}
