using RouteReplay.Engine;
using RouteReplay.Storage;

namespace RouteReplay.Tests.Support;

/// <summary>
/// The shared-prefix workload (greedy and sampled), its one-at-a-time reference results, and a block store folder
/// filled by one engine that ran it, computed once for a test class: tests copy the folder and run a fresh engine.
/// </summary>
public sealed class StoreWorkloadFixture : IDisposable
{
    private readonly Dictionary<bool, (List<EngineRequest> Workload, Dictionary<string, RequestResult> Reference, string Folder, long Computed)> _cases = [];
    private readonly Lock _lock = new();

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

    private (List<EngineRequest> Workload, Dictionary<string, RequestResult> Reference, string Folder, long Computed) Case(bool greedy)
    {
        lock (_lock)
        {
            if (!_cases.TryGetValue(greedy, out var found))
            {
                var (workload, reference) = SharedPrefixWorkload.WithReference(Model, greedy);
                var folder = Directory.CreateTempSubdirectory("routereplay-filled-").FullName;
                using var engine = EngineRunner.Create(Model, Options($"file:{folder}"));
                SharedPrefixWorkload.AssertIdentical(workload, reference, Run(engine, workload));
                Assert.True(engine.StoreTier!.DrainWrites(TimeSpan.FromSeconds(30)));
                Assert.True(engine.StoreTier.Stats.Writes > 10);
                _cases[greedy] = found = (workload, reference, folder, engine.Stats.ComputedTokens);
            }
            return found;
        }
    }

    public void Dispose()
    {
        foreach (var (_, _, folder, _) in _cases.Values)
        {
            Directory.Delete(folder, recursive: true);
        }
        Model.Dispose();
    }
}
