using System.Text.Json;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Cli;

/// <summary>
/// Two separate <c>generate</c> processes sharing a block store (a folder, a Garnet server, a three-node Garnet
/// cluster): the second loads the shared prefixes the first stored and writes tokens and routing byte-identical to a
/// run with no cache at all.
/// </summary>
public sealed class StoreCliTests(GarnetServerFixture server, GarnetClusterFixture cluster)
    : IClassFixture<GarnetServerFixture>, IClassFixture<GarnetClusterFixture>, IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("routereplay-store-cli-").FullName;

    private string PromptsFile()
    {
        var path = Path.Combine(_work, "prompts.jsonl");
        var system = "You are the rollout assistant of an RL run. The router picks experts for every token; keep each answer short and exact.";
        string[] questions = ["What is 2+2?", "Name a prime number.", "Why is the sky blue?", "Define entropy in one line."];
        File.WriteAllLines(path, questions.Select(q => JsonSerializer.Serialize(new
        {
            messages = new object[] { new { role = "system", content = system }, new { role = "user", content = q } },
            max_tokens = 6,
        })));
        return path;
    }

    /// <summary>Runs generate on the prompts file into its own folder and returns (output lines, routing files, stats).</summary>
    private (string[] Outputs, Dictionary<string, byte[]> Routing, JsonElement Stats) Generate(string name, string prompts, params string[] extra)
    {
        var folder = Path.Combine(_work, name);
        var (exit, _, stderr) = GenerateCliTests.RunCli(_work,
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
        return (outputs, routing, stats);
    }

    private void AssertSecondProcessLoadsAndChangesNothing(string store)
    {
        var prompts = PromptsFile();
        var reference = Generate("reference", prompts, "--no-prefix-caching");
        var first = Generate("first", prompts, "--kv-store", store, "--kv-store-timeout-ms", "3000");
        var second = Generate("second", prompts, "--kv-store", store, "--kv-store-timeout-ms", "3000");

        Assert.True(first.Stats.GetProperty("kv_store_writes").GetInt64() >= 4);
        Assert.True(second.Stats.GetProperty("kv_store_hits").GetInt64() >= 4, second.Stats.ToString());
        Assert.True(second.Stats.GetProperty("computed_tokens").GetInt64() < first.Stats.GetProperty("computed_tokens").GetInt64());
        Assert.Equal(0, second.Stats.GetProperty("kv_store_writes").GetInt64());
        Assert.True(second.Stats.GetProperty("kv_store_already_stored").GetInt64() > 0, "the blocks the second process computed were already stored");
        foreach (var run in new[] { first, second })
        {
            Assert.Equal(reference.Outputs, run.Outputs);
            Assert.Equal(reference.Routing.Keys.Order(), run.Routing.Keys.Order());
            foreach (var (file, bytes) in reference.Routing)
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
