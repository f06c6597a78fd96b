using System.Collections.Concurrent;
using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Storage;

/// <summary>
/// Store faults are a node's, not the whole store's: a dead Redis Cluster primary makes only the keys of its hash slots
/// misses while the live primaries keep serving, and a refused connection fails at once, saying so.
/// </summary>
public sealed class StoreNodeFaultTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private const int Requests = 18;

    /// <summary>Prompts of four full blocks and a bit, each with its own first block, so their runs start on every node.</summary>
    private List<EngineRequest> DistinctPrompts() => Enumerable.Range(0, Requests).Select(i => new EngineRequest
    {
        RequestId = $"prompt-{i}",
        PromptTokenIds = model.Tokenizer.Encode($"Request {i}: " + string.Concat(Enumerable.Repeat($"expert {i * 7} routes token {i} ", 12))).Take(70).ToArray(),
        Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 2 },
    }).ToList();

    private static EngineOptions Options(string store, int timeoutMs) =>
        StoreWorkloadFixture.Options(store) with { NumBlocks = 160, KvStoreTimeoutMs = timeoutMs, KvStoreRetryMaxMs = 60_000 };

    [Fact]
    public void A_dead_cluster_primary_misses_only_its_own_keys_while_the_live_ones_keep_hitting()
    {
        using var cluster = new GarnetClusterFixture();
        var requests = DistinctPrompts();
        var reference = EngineRunner.OneAtATime(model, requests);
        using (var first = EngineRunner.Create(model, Options(cluster.StoreSpec, 5000)))
        {
            StoreWorkloadFixture.Run(first, requests);
            Assert.True(first.StoreTier!.DrainWrites(TimeSpan.FromSeconds(30)));
            Assert.Equal(0, first.StoreTier.Stats.FailedWrites + first.StoreTier.Stats.DroppedWrites);
        }

        using var second = EngineRunner.Create(model, Options(cluster.StoreSpec, 5000));
        var log = new ConcurrentQueue<string>();
        second.Log = log.Enqueue;
        cluster.Kill(2);
        var results = StoreWorkloadFixture.Run(second, requests);

        SharedPrefixWorkload.AssertIdentical(requests, reference, results);
        var nodes = second.StoreTier!.Stats.Nodes;
        var dead = nodes[$"127.0.0.1:{cluster.Ports[2]}"];
        Assert.Equal(0, dead.Hits);
        Assert.True(dead.Errors + dead.SkippedWhileDown > 0, "lookups of the dead node's keys were misses");
        Assert.True(dead.IsDown);
        Assert.Equal(1, dead.Outages);
        foreach (var port in cluster.Ports[..2])
        {
            var live = nodes[$"127.0.0.1:{port}"];
            Assert.True(live.Hits > 0, $"the live node {port} served no hit");
            Assert.Equal(0, live.Errors + live.SkippedWhileDown);
            Assert.False(live.IsDown);
            Assert.Equal(0, live.Outages);
        }
        Assert.Single(log, line => line.Contains($"node 127.0.0.1:{cluster.Ports[2]} failed", StringComparison.Ordinal));
        Assert.DoesNotContain(log, line => cluster.Ports[..2].Any(port => line.Contains($"node 127.0.0.1:{port}", StringComparison.Ordinal)));
    }

    [Fact]
    public void A_refused_connection_fails_at_once_and_says_connection_refused()
    {
        const int timeoutMs = 10_000;
        var closedPort = GarnetServerFixture.FreePort();
        var requests = DistinctPrompts()[..4];
        var reference = EngineRunner.OneAtATime(model, requests);
        using var engine = EngineRunner.Create(model, Options($"redis://127.0.0.1:{closedPort}", timeoutMs));
        var log = new ConcurrentQueue<string>();
        engine.Log = log.Enqueue;

        var results = StoreWorkloadFixture.Run(engine, requests);

        SharedPrefixWorkload.AssertIdentical(requests, reference, results);
        var stats = engine.StoreTier!.Stats;
        Assert.Equal(requests.Count, stats.LoadLatency.Count);
        // Had any lookup waited for the timeout, the lookups would take at least that long together; a busy machine
        // slows a refused connect by a second at most.
        Assert.True(stats.LoadLatency.SumSeconds < timeoutMs / 1000.0, $"{stats.LoadLatency.SumSeconds:F2} s of lookups against a refused connection");
        var line = Assert.Single(log);
        Assert.Contains("connection refused", line);
        Assert.DoesNotContain("took longer", line);
        Assert.True(stats.IsDown);
        Assert.Equal(1, stats.Outages);
    }
}
