using RouteReplay.Cache;
using RouteReplay.Engine;
using RouteReplay.Storage;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Storage;

/// <summary>
/// Engines sharing a block store: a fresh engine loads what another one stored and returns tokens and every routing
/// row byte-identical to the one-at-a-time run with no cache; every fault (corrupt, foreign, slow, stale, no room)
/// degrades to recomputation and is counted.
/// </summary>
public sealed class StoreEngineTests(StoreWorkloadFixture fixture) : IClassFixture<StoreWorkloadFixture>, IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("routereplay-kv-").FullName;

    private TinyModelFixture Model => fixture.Model;

    private EngineOptions Options() => StoreWorkloadFixture.Options($"file:{_folder}");

    private string[] StoredFiles() => Directory.GetFiles(_folder, "*" + FileBlockStore.Extension, SearchOption.AllDirectories);

    /// <summary>Asserts one request's result equals the reference's, byte for byte.</summary>
    private static void AssertSame(EngineRequest request, Dictionary<string, RequestResult> reference, Dictionary<string, RequestResult> results) =>
        SharedPrefixWorkload.AssertIdentical([request], new() { [request.RequestId] = reference[request.RequestId] }, new() { [request.RequestId] = results[request.RequestId] });

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_fresh_engine_loads_the_shared_prefixes_from_the_store_and_changes_nothing(bool greedy)
    {
        fixture.CopyStoreTo(greedy, _folder);
        using var second = EngineRunner.Create(Model, Options());
        var results = StoreWorkloadFixture.Run(second, fixture.Workload(greedy));

        SharedPrefixWorkload.AssertIdentical(fixture.Workload(greedy), fixture.Reference(greedy), results);
        var stats = second.StoreTier!.Stats;
        Assert.True(stats.Hits >= 10, $"store hits: {stats.Hits}");
        Assert.Equal(0, stats.Corrupt + stats.Rejected + stats.Errors);
        // How much less is computed depends on timing: in this small pool a loaded block can be evicted before the
        // request that asked for it is admitted (it is computed again, correctly), so only "less" is certain.
        Assert.True(second.Stats.ComputedTokens < fixture.FirstRunComputedTokens(greedy), $"{second.Stats.ComputedTokens} computed after {fixture.FirstRunComputedTokens(greedy)}");
        Assert.True(results.Values.Sum(r => r.Usage.CachedPromptTokens) >= stats.Hits * 16 / 2);
    }

    [Fact]
    public void A_warm_engine_writes_back_nothing_the_store_already_holds()
    {
        var workload = fixture.Workload(true);
        using (var cold = EngineRunner.Create(Model, Options()))
        {
            StoreWorkloadFixture.Run(cold, workload);
            Assert.True(cold.StoreTier!.DrainWrites(TimeSpan.FromSeconds(30)));
            Assert.True(cold.StoreTier.Stats.Writes > 10);
            Assert.Equal(0, cold.StoreTier.Stats.DroppedWrites + cold.StoreTier.Stats.FailedWrites);
        }
        var stored = StoredFiles().ToDictionary(f => f, File.GetLastWriteTimeUtc);

        using var warm = EngineRunner.Create(Model, Options());
        var results = StoreWorkloadFixture.Run(warm, workload);
        Assert.True(warm.StoreTier!.DrainWrites(TimeSpan.FromSeconds(30)));

        SharedPrefixWorkload.AssertIdentical(workload, fixture.Reference(true), results);
        var stats = warm.StoreTier.Stats;
        Assert.True(stats.Hits >= 10, $"store hits: {stats.Hits}");
        Assert.Equal(0, stats.Writes);
        Assert.True(stats.AlreadyStored > 0, "the blocks the warm engine computed were found already stored");
        Assert.Equal(stored.Keys.Order(), StoredFiles().Order());
    }

    [Fact]
    public void Values_corrupted_on_disk_are_detected_counted_and_recomputed()
    {
        fixture.CopyStoreTo(true, _folder);
        foreach (var (file, i) in StoredFiles().Select((f, i) => (f, i)))
        {
            var bytes = File.ReadAllBytes(file);
            bytes[(i * 7919) % bytes.Length] ^= 0x20;
            File.WriteAllBytes(file, i % 3 == 0 ? bytes[..(bytes.Length / 2)] : bytes);
        }

        using var second = EngineRunner.Create(Model, Options(), blockStore: ReadOnlyStore.Open(Options().KvStore!));
        var results = StoreWorkloadFixture.Run(second, fixture.Workload(true));

        SharedPrefixWorkload.AssertIdentical(fixture.Workload(true), fixture.Reference(true), results);
        var stats = second.StoreTier!.Stats;
        Assert.Equal(0, stats.Hits);
        Assert.True(stats.Corrupt > 0);
        Assert.Equal(stats.Lookups, stats.Corrupt + stats.Misses);
    }

    [Fact]
    public void Values_of_another_fingerprint_or_layout_are_never_hits()
    {
        fixture.CopyStoreTo(true, _folder);
        using (var otherWeights = EngineRunner.Create(Model, Options() with { WeightsVersion = "other-weights" }, blockStore: ReadOnlyStore.Open(Options().KvStore!)))
        {
            StoreWorkloadFixture.Run(otherWeights, fixture.Workload(true)[..4]);
            Assert.Equal(0, otherWeights.StoreTier!.Stats.Hits);
            Assert.True(otherWeights.StoreTier.Stats.Misses > 0);
        }
        using (var otherChannels = EngineRunner.Create(Model, Options(), withTestChannel: false, blockStore: ReadOnlyStore.Open(Options().KvStore!)))
        {
            StoreWorkloadFixture.Run(otherChannels, fixture.Workload(true)[..4]);
            Assert.Equal(0, otherChannels.StoreTier!.Stats.Hits);
        }
        Directory.Delete(_folder, recursive: true);
        fixture.CopyStoreTo(true, _folder);
        using var probe = EngineRunner.Create(Model, Options() with { KvStore = null });
        var codec = new PayloadCodec(probe.PayloadLayout);
        foreach (var file in StoredFiles())
        {
            var value = File.ReadAllBytes(file);
            Assert.Equal(PayloadCodecStatus.Ok, codec.TryDecode(value, out var decoded));
            var tokens = new int[decoded.TokenCount];
            decoded.CopyTokenIds(tokens);
            var forged = new PayloadHeader(decoded.Header.Fingerprint + 1, decoded.Header.Key, decoded.Header.Parent);
            File.WriteAllBytes(file, value[..codec.Encode(forged, tokens, decoded.Payload.ToArray(), value)]);
        }

        using var second = EngineRunner.Create(Model, Options(), blockStore: ReadOnlyStore.Open(Options().KvStore!));
        var results = StoreWorkloadFixture.Run(second, fixture.Workload(true));

        SharedPrefixWorkload.AssertIdentical(fixture.Workload(true), fixture.Reference(true), results);
        var stats = second.StoreTier!.Stats;
        Assert.Equal(0, stats.Hits);
        Assert.True(stats.Rejected > 0);
        Assert.Equal(0, stats.Corrupt);
    }

    [Fact]
    public void A_full_write_queue_drops_and_counts_writes_without_blocking_a_step()
    {
        var gated = new GatedStore(new FileBlockStore(_folder, 0), gateReads: false, gateWrites: true);
        using var engine = EngineRunner.Create(Model, Options() with { KvStoreQueueSize = 2 }, blockStore: gated);

        var results = StoreWorkloadFixture.Run(engine, fixture.Workload(true));

        SharedPrefixWorkload.AssertIdentical(fixture.Workload(true), fixture.Reference(true), results);
        var stats = engine.StoreTier!.Stats;
        Assert.True(stats.DroppedWrites > 10, $"dropped {stats.DroppedWrites}");
        Assert.Equal(0, stats.Writes);
        Assert.Equal(2, stats.QueuedWrites);
        Assert.True(SpinWait.SpinUntil(() => gated.WaitingWrites == 2, TimeSpan.FromSeconds(10)), $"{gated.WaitingWrites} writes reached the store");
        gated.OpenWrites();
        Assert.True(engine.StoreTier.DrainWrites(TimeSpan.FromSeconds(30)));
        Assert.Equal(2, stats.Writes + stats.FailedWrites);
    }

    [Fact]
    public async Task Clearing_the_store_after_a_flush_leaves_none_of_the_writes_queued_before_it()
    {
        var gated = new GatedStore(new FileBlockStore(_folder, 0), gateReads: false, gateWrites: true);
        using var engine = EngineRunner.Create(Model, Options() with { KvStoreTimeoutMs = 30_000 }, blockStore: gated);
        StoreWorkloadFixture.Run(engine, fixture.Workload(true));
        var tier = engine.StoreTier!;
        Assert.True(tier.Stats.QueuedWrites > 8, $"writes wait behind the running ones: {tier.Stats.QueuedWrites} queued");

        engine.FlushCache();
        var clear = tier.ClearStoreAsync(CancellationToken.None);
        gated.OpenWrites();
        await clear;

        Assert.True(tier.DrainWrites(TimeSpan.FromSeconds(30)));
        Assert.Empty(StoredFiles());
        Assert.True(tier.Stats.Writes <= 4, $"only the writes already running were written: {tier.Stats.Writes}");
    }

    [Fact]
    public void A_flush_while_loading_discards_the_loaded_blocks_and_an_abort_while_loading_frees_everything()
    {
        fixture.CopyStoreTo(true, _folder);
        var gated = new GatedStore(new FileBlockStore(_folder, 0), gateReads: true, gateWrites: false);
        using var engine = EngineRunner.Create(Model, Options(), blockStore: gated);
        var runner = new EngineRunner();
        var victim = fixture.Workload(true)[0];
        var flushed = fixture.Workload(true)[1];
        engine.AddRequest(victim, runner);
        engine.AddRequest(flushed, runner);
        Assert.False(engine.Step());
        Assert.Equal(2, engine.StoreTier!.PendingLoads);
        Assert.True(engine.Abort(victim.RequestId));
        engine.FlushCache();
        gated.OpenReads();
        engine.RunToCompletion();

        Assert.Equal(FinishReason.Abort, runner.Results[victim.RequestId].Choices[0].FinishReason);
        Assert.Equal(0, runner.Results[flushed.RequestId].Usage.CachedPromptTokens);
        AssertSame(flushed, fixture.Reference(true), runner.Results);
        Assert.True(engine.StoreTier.Stats.Discarded > 0);
        Assert.Equal(0, engine.Pool.UsedBlockCount);
        Assert.Equal(0, engine.StoreTier.PendingLoads);
    }

    [Fact]
    public void Requests_keep_stepping_while_another_waits_for_a_slow_store()
    {
        fixture.CopyStoreTo(true, _folder);
        var gated = new GatedStore(new FileBlockStore(_folder, 0), gateReads: true, gateWrites: false);
        using var engine = EngineRunner.Create(Model, Options(), blockStore: gated);
        var runner = new EngineRunner();
        var stored = fixture.Workload(true)[0];
        var unstored = new EngineRequest { RequestId = "short", PromptTokenIds = [1, 2, 3], Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 5, IgnoreEos = true } };
        engine.AddRequest(stored, runner);
        engine.AddRequest(unstored, runner);
        for (var step = 0; step < 5; step++)
        {
            Assert.True(engine.Step());
        }
        Assert.True(runner.Results.ContainsKey("short"), "the request with nothing to load finished while the other waited");
        Assert.False(runner.Results.ContainsKey(stored.RequestId));
        gated.OpenReads();
        engine.RunToCompletion();
        AssertSame(stored, fixture.Reference(true), runner.Results);
        Assert.True(runner.Results[stored.RequestId].Usage.CachedPromptTokens > 0);
    }

    [Fact]
    public void Loads_that_find_no_free_device_block_are_discarded_and_computed()
    {
        fixture.CopyStoreTo(true, _folder);
        var gated = new GatedStore(new FileBlockStore(_folder, 0), gateReads: false, gateWrites: false);
        using var engine = EngineRunner.Create(Model, Options() with { NumBlocks = 12, MaxNumSeqs = 2 }, blockStore: gated);
        var runner = new EngineRunner();
        var hog = new EngineRequest { RequestId = "hog", PromptTokenIds = Enumerable.Range(500, 150).ToArray(), Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 20, IgnoreEos = true } };
        var hogReference = EngineRunner.OneAtATime(Model, [hog]);
        var stored = fixture.Workload(true)[0];
        engine.AddRequest(hog, runner);
        Assert.False(engine.Step());
        Assert.True(engine.WaitForArrivals());
        Assert.True(engine.Step());
        gated.CloseReads();
        engine.AddRequest(stored, runner);
        while (engine.Pool.FreeBlockCount > 1)
        {
            Assert.True(engine.Step());
        }
        gated.OpenReads();
        Assert.True(engine.StoreTier!.WaitForCompletedLoad(TimeSpan.FromSeconds(10)));
        engine.RunToCompletion();

        Assert.True(engine.StoreTier.Stats.Discarded > 0);
        AssertSame(stored, fixture.Reference(true), runner.Results);
        Assert.Equal(hogReference["hog"].Choices[0].TokenIds, runner.Results["hog"].Choices[0].TokenIds);
        Assert.Equal(hogReference["hog"].Choices[0].Routing!.Data, runner.Results["hog"].Choices[0].Routing!.Data);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
