using RouteReplay.Backends.Cuda;
using RouteReplay.Engine;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;

namespace RouteReplay.DeviceChecks;

/// <summary>
/// Decode steps replayed from CUDA graphs give the bits eager steps give: the same requests (prompts of different
/// lengths, greedy and seeded sampling, outputs of different lengths so the batch shrinks through the token buckets
/// and most steps are padded) run on a dummy model once with graphs and once with <c>--enforce-eager</c>; every
/// token and every routing byte must match, and the graph run must have replayed graphs.
/// </summary>
public static class CudaGraphsCheck
{
    private const int Requests = 13;

    public static CheckResult Run(string preset)
    {
        var config = ModelPresets.Get(preset).Config;
        var (eager, _) = Generate(config, enforceEager: true);
        var (graphs, stats) = Generate(config, enforceEager: false);
        int tokensDiffer = 0, routingDiffer = 0, rows = 0;
        for (var i = 0; i < Requests; i++)
        {
            var a = eager[i].Choices[0];
            var b = graphs[i].Choices[0];
            tokensDiffer += a.TokenIds.SequenceEqual(b.TokenIds) ? 0 : 1;
            routingDiffer += a.Routing!.Data.AsSpan().SequenceEqual(b.Routing!.Data) ? 0 : 1;
            rows += a.Routing.RowCount;
        }
        var passed = tokensDiffer == 0 && routingDiffer == 0 && stats.Replays > 0;
        var summary = $"{preset}: {Requests} requests, {rows} routing rows; tokens differ in {tokensDiffer}, routing in {routingDiffer}; " +
            $"graph run: {stats.Graphs} graphs captured, {stats.Replays} steps replayed, {stats.EagerSteps} eager";
        return new CheckResult("cuda-graphs", passed, summary, w =>
        {
            w.WriteString("preset", preset);
            w.WriteNumber("requests", Requests);
            w.WriteNumber("routing_rows", rows);
            w.WriteNumber("requests_with_different_tokens", tokensDiffer);
            w.WriteNumber("requests_with_different_routing", routingDiffer);
            w.WriteNumber("graphs_captured", stats.Graphs);
            w.WriteNumber("steps_replayed", stats.Replays);
            w.WriteNumber("steps_eager", stats.EagerSteps);
        });
    }

    private static (RequestResult[] Results, (int Graphs, long Replays, long EagerSteps) Stats) Generate(ModelConfig config, bool enforceEager)
    {
        var options = new EngineOptions
        {
            Device = ComputeDevice.Cuda,
            NumBlocks = 1024,
            MaxNumSeqs = 16,
            MaxModelLen = 2048,
            WeightsVersion = "cuda-graphs-check",
            EnforceEager = enforceEager,
        };
        var engine = new AsyncEngine(LoadedModel.LoadDummy(config, 0, options));
        try
        {
            var requests = Enumerable.Range(0, Requests).Select(i => engine.GenerateAsync(new EngineRequest
            {
                RequestId = $"r{i}",
                PromptTokenIds = Enumerable.Range(0, 5 + 37 * i).Select(t => (t * 7919 + i * 104729) % (config.VocabSize - 10) + 10).ToArray(),
                Sampling = new SamplingParams
                {
                    Temperature = i % 2 == 0 ? 0f : 0.8f,
                    Seed = (ulong)i,
                    MaxTokens = 20 + 9 * i,
                    IgnoreEos = true,
                },
            })).ToArray();
            var results = Task.WhenAll(requests).GetAwaiter().GetResult();
            if (results.FirstOrDefault(r => r.Error is not null) is { } failed)
            {
                throw new InvalidOperationException($"request {failed.RequestId} failed: {failed.Error!.Message}", failed.Error);
            }
            var stats = engine.InvokeAsync(e => ((CudaBackend)e.Backend).CudaGraphStats).GetAwaiter().GetResult();
            return (results, stats);
        }
        finally
        {
            engine.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(30));
        }
    }
}
