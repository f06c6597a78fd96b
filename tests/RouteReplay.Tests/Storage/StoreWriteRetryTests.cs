using System.Buffers;
using RouteReplay.Cache;
using RouteReplay.Engine;
using RouteReplay.Storage;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Storage;

/// <summary>A block whose write-through failed while the store was down is written when it is later evicted.</summary>
public sealed class StoreWriteRetryTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>, IDisposable
{
    private const int RetryMaxMs = 100;

    private readonly string _folder = Directory.CreateTempSubdirectory("routereplay-kv-retry-").FullName;

    private EngineRequest Request(string id, string text) => new()
    {
        RequestId = id,
        PromptTokenIds = model.Tokenizer.Encode(string.Concat(Enumerable.Repeat(text + " ", 16))),
        Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 2 },
    };

    [Fact]
    public void Blocks_whose_write_failed_while_the_store_was_down_are_written_on_eviction()
    {
        var options = new EngineOptions { MaxNumSeqs = 4, MaxNumBatchedTokens = 64, NumBlocks = 48, SwapSpaceGiB = 0, KvStoreTimeoutMs = 5000, KvStoreRetryMaxMs = RetryMaxMs };
        var target = Request("target", "written once the store is back");
        var store = new FlakyStore(new FileBlockStore(_folder, maxBytes: 0)) { Down = true };
        using (var engine = EngineRunner.Create(model, options, blockStore: store))
        {
            StoreWorkloadFixture.Run(engine, [target]);
            Assert.True(engine.StoreTier!.DrainWrites(TimeSpan.FromSeconds(30)));
            Assert.True(engine.StoreTier.Stats.FailedWrites >= 3, $"failed writes: {engine.StoreTier.Stats.FailedWrites}");
            Assert.Equal(0, engine.StoreTier.Stats.Writes);

            Assert.True(engine.StoreTier.Stats.IsDown);
            store.Down = false;
            Assert.True(SpinWait.SpinUntil(() => !engine.StoreTier.Stats.IsDown, TimeSpan.FromSeconds(30)), "the background probe found the store back");
            var evictions = engine.Pool.Evictions;
            for (var i = 0; i < 10; i++)
            {
                StoreWorkloadFixture.Run(engine, [Request($"evictor-{i}", $"evictor number {i} fills the pool")]);
            }
            Assert.True(engine.Pool.Evictions - evictions >= 48, "the evictors cycle the whole pool");
            Assert.True(engine.StoreTier.DrainWrites(TimeSpan.FromSeconds(30)));
        }

        using var fresh = EngineRunner.Create(model, options, blockStore: new FileBlockStore(_folder, maxBytes: 0));
        var result = StoreWorkloadFixture.Run(fresh, [target])["target"];
        Assert.True(fresh.StoreTier!.Stats.Hits >= 3, $"store hits: {fresh.StoreTier.Stats.Hits}");
        Assert.True(result.Usage.CachedPromptTokens >= 3 * options.BlockSize);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    /// <summary>A real store whose writes throw while <see cref="Down"/>.</summary>
    private sealed class FlakyStore(IBlockStore inner) : IBlockStore
    {
        public volatile bool Down;

        public string Description => "flaky " + inner.Description;

        public string NodeOf(BlockKey key) => inner.NodeOf(key);

        public ValueTask PutAsync(BlockKey key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken) =>
            Down ? throw new IOException("the store is down") : inner.PutAsync(key, value, cancellationToken);

        public ValueTask<bool> ContainsAsync(BlockKey key, CancellationToken cancellationToken) =>
            Down ? throw new IOException("the store is down") : inner.ContainsAsync(key, cancellationToken);

        public ValueTask ProbeAsync(string node, CancellationToken cancellationToken) =>
            Down ? throw new IOException("the store is down") : inner.ProbeAsync(node, cancellationToken);

        public ValueTask<IMemoryOwner<byte>?> GetAsync(BlockKey key, CancellationToken cancellationToken) => inner.GetAsync(key, cancellationToken);

        public ValueTask<long> ClearAsync(CancellationToken cancellationToken) => inner.ClearAsync(cancellationToken);

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
