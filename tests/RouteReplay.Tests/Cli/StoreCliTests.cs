using System.Text.Json;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Cli;

/// <summary>
/// The prompts file the store tests generate from, and the answers of a <c>generate</c> run with no cache at all (the
/// reference every store run must equal), made once for the class: the reference depends on neither the store nor the
/// test.
/// </summary>
public sealed class StoreCliReferenceFixture : IDisposable
{
    private readonly Lazy<StoreCliTests.GenerateRun> _reference;

    public StoreCliReferenceFixture()
    {
        Prompts = Path.Combine(Work, "prompts.jsonl");
        var system = "You are the rollout assistant of an RL run. The router picks experts for every token; keep each answer short and exact.";
        string[] questions = ["What is 2+2?", "Name a prime number.", "Why is the sky blue?", "Define entropy in one line."];
        File.WriteAllLines(Prompts, questions.Select(q => JsonSerializer.Serialize(new
        {
            messages = new object[] { new { role = "system", content = system }, new { role = "user", content = q } },
            max_tokens = 6,
        })));
        _reference = new(() => StoreCliTests.Generate(Work, "reference", Prompts, "--no-prefix-caching"));
    }

    public string Work { get; } = Directory.CreateTempSubdirectory("routereplay-store-cli-reference-").FullName;

    public string Prompts { get; }

    /// <summary>The run with no cache, made the first time a test asks.</summary>
    public StoreCliTests.GenerateRun Reference => _reference.Value;

    public void Dispose() => Directory.Delete(Work, recursive: true);
}

/// <summary>
/// Two separate <c>generate</c> processes sharing a block store (a folder, a Garnet server, a three-node Garnet
/// cluster): the second loads the shared prefixes the first stored and writes tokens and routing byte-identical to a
/// run with no cache at all.
/// </summary>
public sealed class StoreCliTests(GarnetServerFixture server, GarnetClusterFixture cluster, StoreCliReferenceFixture reference)
    : IClassFixture<GarnetServerFixture>, IClassFixture<GarnetClusterFixture>, IClassFixture<StoreCliReferenceFixture>, IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("routereplay-store-cli-").FullName;

    /// <summary>One generate run: output lines, routing files and stats.</summary>
    public sealed record GenerateRun(string[] Outputs, Dictionary<string, byte[]> Routing, JsonElement Stats);

    /// <summary>Runs generate on the prompts file into its own folder of <paramref name="work"/> (also the model cache).</summary>
    public static GenerateRun Generate(string work, string name, string prompts, params string[] extra)
    {
        var folder = Path.Combine(work, name);
        var (exit, _, stderr) = GenerateCliTests.RunCli(work,
        [
            "generate", "--prompts-file", prompts, "--routing-dir", Path.Combine(folder, "routing"), "--output-jsonl", Path.Combine(folder, "out.jsonl"),
            "--stats-json", Path.Combine(folder, "stats.json"), "--max-num-seqs", "2", "--max-num-batched-tokens", "64", .. extra,
        ]);
        Assert.True(exit == 0, stderr);
        var outputs = File.ReadAllLines(Path.Combine(folder, "out.jsonl")).Select(l =>
        {
            var line = JsonDocument.Parse(l).RootElement;
            return $"{line.GetProperty("line")}:{line.GetProperty("output_token_ids").GetRawText()}:{line.GetProperty("finish_reason")}";
        }).ToArray();
        var routing = Directory.GetFiles(Path.Combine(folder, "routing")).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);
        var stats = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "stats.json"))).RootElement;
        return new GenerateRun(outputs, routing, stats);
    }

    private void AssertSecondProcessLoadsAndChangesNothing(string store)
    {
        var first = Generate(_work, "first", reference.Prompts, "--kv-store", store, "--kv-store-timeout-ms", "3000");
        var second = Generate(_work, "second", reference.Prompts, "--kv-store", store, "--kv-store-timeout-ms", "3000");

        Assert.True(first.Stats.GetProperty("kv_store_writes").GetInt64() >= 4);
        Assert.True(second.Stats.GetProperty("kv_store_hits").GetInt64() >= 4, second.Stats.ToString());
        Assert.True(second.Stats.GetProperty("computed_tokens").GetInt64() < first.Stats.GetProperty("computed_tokens").GetInt64());
        Assert.Equal(0, second.Stats.GetProperty("kv_store_writes").GetInt64());
        Assert.True(second.Stats.GetProperty("kv_store_already_stored").GetInt64() > 0, "the blocks the second process computed were already stored");
        var plain = reference.Reference;
        foreach (var run in new[] { first, second })
        {
            Assert.Equal(plain.Outputs, run.Outputs);
            Assert.Equal(plain.Routing.Keys.Order(), run.Routing.Keys.Order());
            foreach (var (file, bytes) in plain.Routing)
            {
                Assert.Equal(bytes, run.Routing[file]);
            }
        }
    }

    [Fact]
    public void Two_processes_share_prefixes_through_a_file_store() => AssertSecondProcessLoadsAndChangesNothing($"file:{Path.Combine(_work, "kv")}");

    [Fact]
    public void Two_processes_share_prefixes_through_a_redis_server() => AssertSecondProcessLoadsAndChangesNothing(server.StoreSpec);

    [Fact]
    public void Two_processes_share_prefixes_through_a_redis_cluster() => AssertSecondProcessLoadsAndChangesNothing(cluster.StoreSpec);

    [Fact]
    public void A_malformed_store_flag_is_a_clear_error()
    {
        var (exit, _, stderr) = GenerateCliTests.RunCli(_work, "generate", "--prompt", "x", "--kv-store", "s3://bucket");
        Assert.Equal(2, exit);
        Assert.Contains("--kv-store 's3://bucket' must be file:DIR or redis://", stderr);
        (exit, _, stderr) = GenerateCliTests.RunCli(_work, "generate", "--prompt", "x", "--kv-store", "file:/tmp/x", "--no-prefix-caching");
        Assert.Equal(2, exit);
        Assert.Contains("--kv-store needs prefix caching", stderr);
    }

    public void Dispose() => Directory.Delete(_work, recursive: true);
}
