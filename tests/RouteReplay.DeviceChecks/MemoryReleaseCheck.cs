using System.Diagnostics;
using RouteReplay.Backends.Cuda;
using RouteReplay.Engine;
using RouteReplay.Model.Presets;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.DeviceChecks;

/// <summary>
/// Sharing the GPU with a trainer on the CUDA backend. Level 1 (weights kept in host memory): the release frees the KV
/// cache and the weights (cudaMemGetInfo shows at least their bytes free), the resume takes the same memory back, and
/// greedy and seeded requests give the tokens and routing the fresh engine gave. Level 2 (weights dropped): the same
/// memory is free, a resume is refused until new weights are applied, and then the requests give the tokens and routing
/// of a fresh engine on those weights.
/// </summary>
public static class MemoryReleaseCheck
{
    /// <summary>What cudaMemGetInfo may differ by beyond the released allocations (its 2 MiB pages, the driver's own).</summary>
    private const long SlackBytes = 64L << 20;

    private static readonly string[] Prompts =
    [
        "The trainer takes the GPU between rollouts, and the engine gives it back.",
        "RL rollouts need the exact routing the sampler saw, before and after a sleep.",
        "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16",
    ];

    public static CheckResult Run(string preset, string workDirectory)
    {
        var first = Path.Combine(workDirectory, $"memory-{preset}-seed0");
        var second = Path.Combine(workDirectory, $"memory-{preset}-seed1");
        ModelMaker.Make(ModelPresets.Get(preset), first);
        ModelMaker.Make(ModelPresets.Get(preset), second, seed: 1);
        var tokenizer = TextTokenizer.Load(first);
        var requests = Prompts.SelectMany((prompt, i) => new[] { Greedy($"greedy-{i}", tokenizer.Encode(prompt)), Seeded($"seeded-{i}", tokenizer.Encode(prompt), (ulong)i) }).ToArray();
        var options = new EngineOptions { Device = ComputeDevice.Cuda, MaxNumSeqs = 8, MaxModelLen = 2048, GpuMemoryUtilization = 0.5, WeightsVersion = "memory-check" };

        List<RequestResult> freshSecond;
        using (var engine = LoadedModel.Load(second, options))
        {
            freshSecond = RunAll(engine, requests);
        }
        using var served = LoadedModel.Load(first, options);
        var backend = (CudaBackend)served.Backend;
        var fresh = RunAll(served, requests);
        var expectedFree = ((long)backend.NumBlocks * backend.KvBytesPerBlock) + backend.WeightBytes - SlackBytes;
        var awake = FreeBytes();

        var clock = Stopwatch.StartNew();
        served.ReleaseMemory(MemoryRegions.All, keepWeightsInHost: true);
        var releaseSeconds = clock.Elapsed.TotalSeconds;
        var freedLevel1 = FreeBytes() - awake;
        clock.Restart();
        served.ResumeMemory(MemoryRegions.All);
        var resumeSeconds = clock.Elapsed.TotalSeconds;
        var retakenLevel1 = awake - FreeBytes();
        var level1Same = Same(fresh, RunAll(served, requests));

        served.ReleaseMemory(MemoryRegions.All, keepWeightsInHost: false);
        var freedLevel2 = FreeBytes() - awake;
        var refused = false;
        try
        {
            served.ResumeMemory(MemoryRegions.All);
        }
        catch (WeightsDiscardedException)
        {
            refused = true;
        }
        served.ApplyWeightUpdate(served.PrepareWeightUpdate(second, "memory-check-seed1"));
        served.ResumeMemory(MemoryRegions.KvCache);
        var level2Same = Same(freshSecond, RunAll(served, requests));
        var awakeAtEnd = served.MemoryState == MemoryState.Awake;

        var passed = freedLevel1 >= expectedFree && Math.Abs(retakenLevel1) <= SlackBytes && level1Same && freedLevel2 >= expectedFree && refused && level2Same && awakeAtEnd;
        var summary = $"{preset} on {backend.DeviceName}: KV {backend.NumBlocks} blocks ({(long)backend.NumBlocks * backend.KvBytesPerBlock / 1e9:F2} GB) + weights {backend.WeightBytes / 1e9:F3} GB; " +
            $"level 1 freed {freedLevel1 / 1e9:F2} GB in {releaseSeconds:F2} s, resume took back {retakenLevel1 / 1e9:F2} GB in {resumeSeconds:F2} s, {requests.Length} requests identical {level1Same}; " +
            $"level 2 freed {freedLevel2 / 1e9:F2} GB, resume refused {refused}, after new weights identical to a fresh engine {level2Same}";
        return new CheckResult("memory-release", passed, summary, w =>
        {
            w.WriteNumber("kv_cache_bytes", (long)backend.NumBlocks * backend.KvBytesPerBlock);
            w.WriteNumber("weight_bytes", backend.WeightBytes);
            w.WriteNumber("level1_freed_bytes", freedLevel1);
            w.WriteNumber("level1_release_seconds", releaseSeconds);
            w.WriteNumber("level1_resume_seconds", resumeSeconds);
            w.WriteNumber("level1_resume_retaken_bytes", retakenLevel1);
            w.WriteBoolean("level1_identical", level1Same);
            w.WriteNumber("level2_freed_bytes", freedLevel2);
            w.WriteBoolean("level2_resume_refused", refused);
            w.WriteBoolean("level2_identical_to_fresh_engine", level2Same);
        });
    }

    private static EngineRequest Greedy(string id, IReadOnlyList<int> prompt) => new()
    {
        RequestId = id,
        PromptTokenIds = prompt,
        Sampling = new SamplingParams { Temperature = 0, MaxTokens = 24, IgnoreEos = true },
        ReturnRouting = true,
    };

    private static EngineRequest Seeded(string id, IReadOnlyList<int> prompt, ulong seed) => Greedy(id, prompt) with
    {
        Sampling = new SamplingParams { Temperature = 1f, TopP = 0.95f, Seed = 1000 + seed, MaxTokens = 24, IgnoreEos = true },
    };

    /// <summary>Each request alone, in order, so two runs see the same batches.</summary>
    private static List<RequestResult> RunAll(LlmEngine engine, IEnumerable<EngineRequest> requests)
    {
        var results = new List<RequestResult>();
        foreach (var request in requests)
        {
            var sink = new Collector();
            engine.AddRequest(request, sink);
            engine.RunToCompletion();
            results.Add(sink.Result is { Error: null } result ? result : throw new InvalidOperationException($"{request.RequestId} failed: {sink.Result?.Error?.Message}"));
        }
        return results;
    }

    private static bool Same(List<RequestResult> expected, List<RequestResult> actual) =>
        expected.Count == actual.Count && expected.Zip(actual).All(pair =>
            pair.First.Choices[0].TokenIds.SequenceEqual(pair.Second.Choices[0].TokenIds) &&
            pair.First.Choices[0].Routing!.Data.AsSpan().SequenceEqual(pair.Second.Choices[0].Routing!.Data));

    private static long FreeBytes()
    {
        CudaNative.Check(CudaNative.MemoryInfo(out var free, out _), "reading the GPU's free memory");
        return (long)free;
    }

    private sealed class Collector : IRequestSink
    {
        public RequestResult? Result { get; private set; }

        public void OnDelta(StreamDelta delta)
        {
        }

        public void OnFinished(RequestResult result) => Result = result;
    }
}
