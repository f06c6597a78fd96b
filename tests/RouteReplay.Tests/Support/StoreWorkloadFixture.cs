using System.Collections.Concurrent;
using RouteReplay.Cache;
using RouteReplay.Engine;
using RouteReplay.Storage;

namespace RouteReplay.Tests.Support;

/// <summary>
/// The shared-prefix workload (greedy and sampled), its one-at-a-time reference results, and a block store folder
/// filled by one engine that ran it: tests copy the folder (or read its values) and run a fresh engine. Each case is
/// computed once per test process for a model's weights and shared by every class that uses the fixture, as the
/// workload's reference is (<see cref="SharedPrefixWorkload.WithReference"/>); no test writes to the filled folder.
/// </summary>
public sealed class StoreWorkloadFixture : IDisposable
{
    private static readonly ConcurrentDictionary<(string Weights, bool Greedy), Lazy<(List<EngineRequest> Workload, Dictionary<string, RequestResult> Reference, string Folder, long Computed)>> Cases = new();

    private readonly Lazy<string> _weights;

    public StoreWorkloadFixture() => _weights = new(() => ModelFingerprint.HashWeights(Model.Directory));

    public TinyModelFixture Model { get; } = new();

    /// <summary>The engine settings every store test uses (a pool small enough to evict, a store of the given kind).</summary>
    public static EngineOptions Options(string store) => new()
    {
        MaxNumSeqs = 6,
        MaxNumBatchedTokens = 64,
        NumBlocks = 48,
        SwapSpaceGiB = 0,
        KvStore = store,
        KvStoreTimeoutMs = 5000,
    };

    public List<EngineRequest> Workload(bool greedy) => Case(greedy).Workload;

    public Dictionary<string, RequestResult> Reference(bool greedy) => Case(greedy).Reference;

    /// <summary>Tokens the engine that filled the store computed.</summary>
    public long FirstRunComputedTokens(bool greedy) => Case(greedy).Computed;

    /// <summary>Copies the filled store into <paramref name="destination"/>.</summary>
    public void CopyStoreTo(bool greedy, string destination)
    {
        var source = Case(greedy).Folder;
        foreach (var file in Directory.GetFiles(source, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(destination, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target, overwrite: true);
        }
    }

    /// <summary>Every stored value: key (32 hex digits) and bytes.</summary>
    public IEnumerable<(string Key, byte[] Value)> StoredValues(bool greedy) =>
        Directory.GetFiles(Case(greedy).Folder, "*" + FileBlockStore.Extension, SearchOption.AllDirectories)
            .Select(f => (Path.GetFileNameWithoutExtension(f), File.ReadAllBytes(f)));

    public static Dictionary<string, RequestResult> Run(LlmEngine engine, IEnumerable<EngineRequest> workload)
    {
        var runner = new EngineRunner();
        foreach (var request in workload)
        {
            engine.AddRequest(request, runner);
        }
        engine.RunToCompletion();
        Assert.Equal(0, engine.Pool.UsedBlockCount);
        return runner.Results;
    }

    private (List<EngineRequest> Workload, Dictionary<string, RequestResult> Reference, string Folder, long Computed) Case(bool greedy) =>
        Cases.GetOrAdd((_weights.Value, greedy), _ => new(() =>
        {
            var (workload, reference) = SharedPrefixWorkload.WithReference(Model, greedy);
            var folder = Directory.CreateTempSubdirectory("routereplay-filled-").FullName;
            AppDomain.CurrentDomain.ProcessExit += (_, _) => Directory.Delete(folder, recursive: true);
            using var engine = EngineRunner.Create(Model, Options($"file:{folder}"));
            SharedPrefixWorkload.AssertIdentical(workload, reference, Run(engine, workload));
            Assert.True(engine.StoreTier!.DrainWrites(TimeSpan.FromSeconds(30)));
            Assert.True(engine.StoreTier.Stats.Writes > 10);
            return (workload, reference, folder, engine.Stats.ComputedTokens);
        })).Value;

    public void Dispose() => Model.Dispose();
}
