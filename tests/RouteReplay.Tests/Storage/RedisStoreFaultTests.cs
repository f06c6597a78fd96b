using RouteReplay.Storage;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Storage;

/// <summary>Faults of a real Redis-protocol store (Garnet, in the test process): killed mid-run, values corrupted in place.</summary>
public sealed class RedisStoreFaultTests(StoreWorkloadFixture fixture) : IClassFixture<StoreWorkloadFixture>
{
    /// <summary>Puts every value the fixture's first engine stored into the server, under the store's key names.</summary>
    private void Fill(GarnetServerFixture server, bool greedy, Func<byte[], int, byte[]>? alter = null)
    {
        using var connection = server.Connect();
        var database = connection.GetDatabase();
        foreach (var ((key, value), i) in fixture.StoredValues(greedy).Select((v, i) => (v, i)))
        {
            database.StringSet(RedisBlockStore.KeyPrefix + key, alter is null ? value : alter(value, i));
        }
    }

    [Fact]
    public void A_store_killed_mid_run_fails_no_request_and_changes_no_row()
    {
        using var server = new GarnetServerFixture();
        Fill(server, greedy: true);
        var workload = fixture.Workload(true);
        using var engine = EngineRunner.Create(fixture.Model, StoreWorkloadFixture.Options(server.StoreSpec) with { KvStoreTimeoutMs = 1000 });
        var runner = new EngineRunner();
        foreach (var request in workload)
        {
            engine.AddRequest(request, runner);
        }
        for (var step = 0; step < 6; step++)
        {
            engine.Step();
            engine.WaitForArrivals();
        }
        var hitsBeforeKill = engine.StoreTier!.Stats.Hits;
        server.Kill();
        engine.RunToCompletion();

        SharedPrefixWorkload.AssertIdentical(workload, fixture.Reference(true), runner.Results);
        var stats = engine.StoreTier.Stats;
        Assert.True(hitsBeforeKill > 0, "the store served hits before it was killed");
        Assert.True(stats.Errors + stats.SkippedWhileDown + stats.FailedWrites > 0, "the outage was counted");
        Assert.True(stats.Outages >= 1);
        Assert.True(stats.IsDown);
        Assert.Equal(0, engine.Pool.UsedBlockCount);
    }

    [Fact]
    public void Values_corrupted_in_redis_are_detected_counted_and_never_served()
    {
        using var server = new GarnetServerFixture();
        Fill(server, greedy: false, (value, i) =>
        {
            value[(i * 104_729) % value.Length] ^= 0x01;
            return value;
        });
        using var engine = EngineRunner.Create(fixture.Model, StoreWorkloadFixture.Options(server.StoreSpec), blockStore: ReadOnlyStore.Open(server.StoreSpec));
        var results = StoreWorkloadFixture.Run(engine, fixture.Workload(false));

        SharedPrefixWorkload.AssertIdentical(fixture.Workload(false), fixture.Reference(false), results);
        var stats = engine.StoreTier!.Stats;
        Assert.Equal(0, stats.Hits);
        Assert.True(stats.Corrupt > 0);
        Assert.Equal(0, stats.Errors);
    }
}
