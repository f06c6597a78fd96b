using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Families;

/// <summary>
/// For every family, on a backend whose routing depends on the batch: a block loaded from the block store by a second
/// engine carries exactly the rows it was first computed with in the engine that stored it (recomputing it in the
/// second engine's batches would give other rows), so the family's KV payload (DeepSeek-V3's latent cache included)
/// and routing travel together through the store.
/// </summary>
public sealed class FamilyStoreTests(FamilyModelsFixture models) : IClassFixture<FamilyModelsFixture>
{
    public static TheoryData<string> Presets => [.. FamilyModelsFixture.Presets];

    [Theory]
    [MemberData(nameof(Presets))]
    public void Rows_after_a_store_hit_equal_the_rows_first_computed(string preset)
    {
        var folder = Directory.CreateTempSubdirectory("routereplay-family-store-").FullName;
        try
        {
            var workload = SharedPrefixWorkload.Build(models.Tokenizer, greedy: true, firstTurns: null);
            var options = StoreWorkloadFixture.Options($"file:{folder}");
            var (first, _, firstRows) = EngineRunner.CreateBatchVariant(models.DirectoryOf(preset), options);
            var stored = new Dictionary<string, RequestResult>();
            using (first)
            {
                foreach (var request in workload)
                {
                    foreach (var (id, result) in StoreWorkloadFixture.Run(first, [request]))
                    {
                        stored[id] = result;
                    }
                }
                Assert.True(first.StoreTier!.DrainWrites(TimeSpan.FromSeconds(30)));
            }
            firstRows.AssertUnchanged(stored.Values);

            var (second, _, secondRows) = EngineRunner.CreateBatchVariant(models.DirectoryOf(preset), options with { MaxNumBatchedTokens = 40 });
            Dictionary<string, RequestResult> loaded;
            using (second)
            {
                loaded = StoreWorkloadFixture.Run(second, Enumerable.Reverse(workload));
                Assert.True(second.StoreTier!.Stats.Hits >= 10, $"store hits: {second.StoreTier.Stats.Hits}");
            }
            secondRows.AssertUnchanged(loaded.Values);

            var compared = 0;
            foreach (var request in workload)
            {
                var result = loaded[request.RequestId];
                var cached = result.Usage.CachedPromptTokens;
                if (cached == 0)
                {
                    continue;
                }
                var rowBytes = result.Choices[0].Routing!.Format.RowBytes;
                Assert.Equal(firstRows.Rows(request.RequestId, 0, 0, cached), result.Choices[0].Routing!.Data.AsSpan(0, cached * rowBytes).ToArray());
                compared += cached;
            }
            Assert.True(compared >= 10 * options.BlockSize, $"only {compared} prompt rows came from the store");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
