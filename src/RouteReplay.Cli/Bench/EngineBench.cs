using System.Diagnostics;
using RouteReplay.Backends.Cuda;
using RouteReplay.Engine;

namespace RouteReplay.Cli.Bench;

/// <summary>One decode measurement: tokens/s over the steps after every request has its first token.</summary>
internal sealed record DecodeRun(int Batch, bool Routing, int Round, double TokensPerSecond, double StepSeconds, int DecodeSteps, double DistinctExpertsPerStep, long ContextTokensPerStep);

/// <summary>One prefill measurement: prompt tokens/s from submission to every request's first token.</summary>
internal sealed record PrefillRun(int Requests, int PromptTokens, bool Routing, int Round, double TokensPerSecond, double Seconds, double MinExpertsUsedFraction);

/// <summary>Where a step's time goes: milliseconds per step of each kernel class.</summary>
internal sealed record KernelProfile(string Shape, int Steps, IReadOnlyList<(string Name, double MillisecondsPerStep)> Classes);

/// <summary>
/// Runs decode and prefill shapes through one engine in-process. Prompts are random token ids (distinct per
/// request and run, so no prefix is shared), generation is greedy with end-of-sequence ignored, so every request
/// produces exactly its output tokens. Routing capture is switched per run on the engine, so on and off alternate
/// within one process.
/// </summary>
internal sealed class EngineBench(LlmEngine engine, int tokenLimit)
{
    private ulong _run;

    public DecodeRun Decode(int batch, int promptTokens, int outputTokens, bool routing, int round, CudaBackend? profiled = null, List<KernelProfile>? profiles = null)
    {
        var sink = Submit(batch, promptTokens, outputTokens, routing, "decode");
        var clock = Stopwatch.StartNew();
        double firstAll = -1;
        var decodeSteps = 0;
        while (true)
        {
            sink.Step++;
            if (!engine.Step())
            {
                break;
            }
            if (firstAll >= 0)
            {
                decodeSteps++;
            }
            else if (sink.Started == batch)
            {
                firstAll = clock.Elapsed.TotalSeconds;
                profiled?.SetProfiling(true);
            }
        }
        var seconds = clock.Elapsed.TotalSeconds - firstAll;
        if (profiled is not null)
        {
            profiles!.Add(new KernelProfile($"decode batch {batch}", decodeSteps, profiled.ReadProfile().Select(p => (p.Name, p.Milliseconds / Math.Max(1, decodeSteps))).ToArray()));
            profiled.SetProfiling(false);
        }
        sink.ThrowIfFailed();
        var generated = sink.Results.Values.Sum(r => r.Choices[0].TokenIds.Count);
        if (generated != batch * outputTokens)
        {
            throw new InvalidOperationException($"the decode run generated {generated} tokens, expected {batch * outputTokens}");
        }
        var (distinct, context) = routing ? DecodeStepStatistics(sink) : (double.NaN, batch * (promptTokens + (outputTokens / 2L)));
        var tokens = batch * (outputTokens - 1);
        return new DecodeRun(batch, routing, round, tokens / seconds, seconds / Math.Max(1, decodeSteps), decodeSteps, distinct, context);
    }

    public PrefillRun Prefill(int requests, int promptTokens, bool routing, int round, CudaBackend? profiled = null, List<KernelProfile>? profiles = null)
    {
        var sink = Submit(requests, promptTokens, 1, routing, "prefill");
        profiled?.SetProfiling(true);
        var clock = Stopwatch.StartNew();
        var steps = 0;
        while (engine.Step())
        {
            steps++;
        }
        var seconds = clock.Elapsed.TotalSeconds;
        if (profiled is not null)
        {
            profiles!.Add(new KernelProfile($"prefill {requests} x {promptTokens}", steps, profiled.ReadProfile().Select(p => (p.Name, p.Milliseconds / Math.Max(1, steps))).ToArray()));
            profiled.SetProfiling(false);
        }
        sink.ThrowIfFailed();
        return new PrefillRun(requests, promptTokens, routing, round, requests * (double)promptTokens / seconds, seconds, routing ? MinExpertsUsed(sink) : double.NaN);
    }

    private RunSink Submit(int requests, int promptTokens, int outputTokens, bool routing, string kind)
    {
        engine.CaptureRouting = routing;
        var run = ++_run;
        var sink = new RunSink(promptTokens);
        for (var i = 0; i < requests; i++)
        {
            var random = new SeededRandom(((run * 1_000_003) + (ulong)i) ^ 0x5EED);
            var prompt = new int[promptTokens];
            for (var p = 0; p < promptTokens; p++)
            {
                prompt[p] = (int)(random.NextDouble() * Math.Min(tokenLimit, 150_000));
            }
            engine.AddRequest(new EngineRequest
            {
                RequestId = $"{kind}-{run}-{i}",
                PromptTokenIds = prompt,
                Sampling = new SamplingParams { Temperature = 0f, MaxTokens = outputTokens, IgnoreEos = true },
                ReturnRouting = routing,
            }, sink);
        }
        return sink;
    }

    /// <summary>Per decode step: distinct experts over the step's tokens (summed over MoE layers), and the KV tokens read.</summary>
    private (double DistinctExperts, long ContextTokens) DecodeStepStatistics(RunSink sink)
    {
        var format = engine.RoutingFormat;
        var byStep = new Dictionary<int, List<(string Request, int Position)>>();
        foreach (var (request, position, step) in sink.FedPositions)
        {
            if (!byStep.TryGetValue(step, out var list))
            {
                byStep[step] = list = [];
            }
            list.Add((request, position));
        }
        double distinctTotal = 0;
        long contextTotal = 0;
        var seen = new HashSet<int>();
        foreach (var tokens in byStep.Values)
        {
            for (var layer = 0; layer < format.MoeLayerCount; layer++)
            {
                seen.Clear();
                foreach (var (request, position) in tokens)
                {
                    var rows = sink.Results[request].Choices[0].Routing!.Data;
                    for (var j = 0; j < format.TopK; j++)
                    {
                        seen.Add(format.Get(rows.AsSpan(position * format.RowBytes), (layer * format.TopK) + j));
                    }
                }
                distinctTotal += seen.Count;
            }
            contextTotal += tokens.Sum(t => t.Position + 1L);
        }
        var steps = Math.Max(1, byStep.Count);
        return (distinctTotal / steps, contextTotal / steps);
    }

    /// <summary>The smallest fraction of experts any MoE layer used over the run's prompt tokens.</summary>
    private double MinExpertsUsed(RunSink sink)
    {
        var format = engine.RoutingFormat;
        var used = new HashSet<int>[format.MoeLayerCount];
        for (var l = 0; l < used.Length; l++)
        {
            used[l] = [];
        }
        foreach (var result in sink.Results.Values)
        {
            var rows = result.Choices[0].Routing!;
            for (var r = 0; r < rows.RowCount; r++)
            {
                for (var i = 0; i < format.ElementsPerRow; i++)
                {
                    used[i / format.TopK].Add(format.Get(rows.Data.AsSpan(r * format.RowBytes), i));
                }
            }
        }
        return used.Min(u => u.Count) / (double)format.NumExperts;
    }

    private sealed class RunSink(int promptTokens) : IRequestSink
    {
        private readonly Dictionary<string, int> _generated = [];

        public int Step { get; set; }

        public int Started => _generated.Count;

        public Dictionary<string, RequestResult> Results { get; } = [];

        /// <summary>(request, position fed, step) of every decode step: the token fed is the one sampled the step before.</summary>
        public List<(string Request, int Position, int Step)> FedPositions { get; } = [];

        public void OnDelta(StreamDelta delta)
        {
            var before = _generated.GetValueOrDefault(delta.RequestId);
            if (before > 0)
            {
                FedPositions.Add((delta.RequestId, promptTokens + before - 1, Step));
            }
            _generated[delta.RequestId] = before + delta.TokenIds.Count;
        }

        public void OnFinished(RequestResult result) => Results[result.RequestId] = result;

        public void ThrowIfFailed()
        {
            if (Results.Values.FirstOrDefault(r => r.Error is not null) is { } failed)
            {
                throw new InvalidOperationException($"benchmark request {failed.RequestId} failed: {failed.Error!.Message}");
            }
        }
    }
}
