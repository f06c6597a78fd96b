using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Storage;

/// <summary>
/// On a backend whose routing depends on the batch (as a GPU's may), a block loaded from the store carries exactly the
/// rows it was first computed with in the engine that stored it: recomputing it in the second engine's batches would
/// give other rows, so equality proves the rows came from the store with the KV.
/// </summary>
public sealed class StoreBatchVariantTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>, IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("routereplay-kv-variant-").FullName;

    [Fact]
    public void Rows_returned_after_a_store_hit_equal_the_rows_the_block_was_first_computed_with()
    {
        var workload = SharedPrefixWorkload.Build(model.Tokenizer, greedy: true, firstTurns: null);
        var options = StoreWorkloadFixture.Options($"file:{_folder}");

        // One request at a time, so each block is computed once: the rows it was first computed with are the stored ones.
        var (first, _, firstRows) = EngineRunner.CreateBatchVariant(model, options);
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

        // Another arrival order and step size: every recomputed row would shift differently.
        var (second, _, secondRows) = EngineRunner.CreateBatchVariant(model, options with { MaxNumBatchedTokens = 40 });
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
            var returned = result.Choices[0].Routing!.Data.AsSpan(0, cached * rowBytes).ToArray();
            Assert.Equal(firstRows.Rows(request.RequestId, 0, 0, cached), returned);
            compared += cached;
        }
        Assert.True(compared >= 10 * options.BlockSize, $"only {compared} prompt rows came from the store");
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
