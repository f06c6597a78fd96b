using BenchmarkDotNet.Attributes;
using RouteReplay.Cache;
using RouteReplay.Engine;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.Bench;

/// <summary>One scheduling pass over 256 running sequences that each decode one token.</summary>
[MemoryDiagnoser]
public class SchedulerBenchmarks
{
    private Scheduler _scheduler = null!;

    [GlobalSetup]
    public void Setup()
    {
        var options = new EngineOptions { MaxNumSeqs = 256, MaxNumBatchedTokens = 8192, NumBlocks = 256 * 4, MaxModelLen = 64 }.Validate();
        var format = new RouteReplay.Routing.RoutingFormat([0, 1, 2, 3], 8, 64);
        var routing = new RoutingChannel(format, options.ResolvedNumBlocks, options.BlockSize);
        var pool = new BlockPool(options.ResolvedNumBlocks, options.BlockSize, enablePrefixCaching: true, [routing]);
        _scheduler = new Scheduler(options, pool, host: null, store: null, copier: null, routing, new EngineStats());
        var tokenizer = TextTokenizer.Load(Assets.Qwen3TokenizerDirectory);
        for (var i = 0; i < 256; i++)
        {
            var request = new EngineRequest { RequestId = $"r{i}", PromptTokenIds = Enumerable.Range(i * 40, 20).ToArray(), Sampling = new SamplingParams { MaxTokens = 32 } };
            var state = new RequestState(request, NullSink.Instance);
            state.Choices = [new Sequence(state, 0, 32, tokenizer, BlockKey.Root(1))];
            _scheduler.Enqueue(state.Choices[0]);
        }
        foreach (var chunk in _scheduler.Schedule())
        {
            chunk.Sequence.ComputedTokens += chunk.Tokens;
            chunk.Sequence.Append(1);
        }
    }

    [Benchmark]
    public int ScheduleStepWith256Running() => _scheduler.Schedule().Count;
}

internal sealed class NullSink : IRequestSink
{
    public static readonly NullSink Instance = new();

    public void OnDelta(StreamDelta delta)
    {
    }

    public void OnFinished(RequestResult result)
    {
    }
}
