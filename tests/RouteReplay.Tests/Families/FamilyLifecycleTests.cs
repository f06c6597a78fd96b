using RouteReplay.Backends.Cpu;
using RouteReplay.DeviceChecks.Lifecycle;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;
using RouteReplay.Model.Tokenization;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Families;

/// <summary>The tiny preset of every family besides Qwen3-MoE, made once into temporary folders.</summary>
public sealed class FamilyModelsFixture : IDisposable
{
    public static readonly string[] Presets = ["olmoe-tiny", "qwen2-moe-tiny", "mixtral-tiny", "deepseek-v3-tiny", "gpt-oss-tiny"];

    private readonly Dictionary<string, string> _directories = [];

    public FamilyModelsFixture()
    {
        foreach (var preset in Presets)
        {
            var directory = Path.Combine(Path.GetTempPath(), $"routereplay-{preset}-{Guid.NewGuid():N}");
            ModelMaker.Make(ModelPresets.Get(preset), directory);
            _directories[preset] = directory;
        }
        Tokenizer = TextTokenizer.Load(_directories[Presets[0]]);
    }

    public TextTokenizer Tokenizer { get; }

    public string DirectoryOf(string preset) => _directories[preset];

    public CpuBackend CreateBackend(string preset, int numBlocks, int blockSize)
    {
        using var checkpoint = Checkpoint.Open(_directories[preset]);
        return CpuBackend.Load(checkpoint, numBlocks, blockSize);
    }

    public void Dispose()
    {
        foreach (var directory in _directories.Values)
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}

/// <summary>
/// Every lifecycle path (prefix hit with chunked prefill, swap, recompute with replay, the host tier, n > 1, abort)
/// returns the rows each token was first computed with, for every family, on a backend whose routing depends on the
/// batch (so a recomputed row that was not replayed would differ). The block store and prefill/decode transfers are
/// covered per family by <see cref="FamilyStoreTests"/> and <see cref="FamilyTransferTests"/>.
/// </summary>
public sealed class FamilyLifecycleTests(FamilyModelsFixture models) : IClassFixture<FamilyModelsFixture>
{
    public static TheoryData<string, string> Cases()
    {
        var cases = new TheoryData<string, string>();
        foreach (var preset in FamilyModelsFixture.Presets)
        {
            foreach (var scenario in LifecycleScenarios.Names)
            {
                cases.Add(preset, scenario);
            }
        }
        return cases;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Every_path_returns_the_first_computed_rows(string preset, string scenario)
    {
        var options = LifecycleScenarios.Options(scenario);
        var backend = new BatchVariantBackend(models.CreateBackend(preset, options.ResolvedNumBlocks, options.BlockSize));
        var outcome = LifecycleScenarios.Run(scenario, backend, models.Tokenizer);
        Assert.True(outcome.Passed, LifecycleScenarios.Describe(outcome));
        Assert.True(backend.ShiftedRows > 0, "the backend shifted no row");
    }
}
