using System.Text.Json;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Cli;

/// <summary><c>serve</c> and <c>generate</c> log, at startup, how much each tier of the KV pool holds: blocks, tokens and bytes.</summary>
public sealed class PoolLogTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("routereplay-pool-log-").FullName;

    [Fact]
    public async Task Serve_and_generate_log_the_pool_of_every_tier_in_blocks_tokens_and_bytes()
    {
        var stats = Path.Combine(_work, "stats.json");
        var (exit, _, stderr) = GenerateCliTests.RunCli(_work, "generate", "--prompt", "Hi", "--max-tokens", "1", "--num-blocks", "64", "--swap-space", "0.5", "--stats-json", stats);
        Assert.True(exit == 0, stderr);
        var json = JsonDocument.Parse(File.ReadAllText(stats)).RootElement;
        var payload = json.GetProperty("payload_bytes_per_block").GetInt64();
        var routing = json.GetProperty("routing_bytes_per_block").GetInt64();
        var hostBlocks = (512L << 20) / payload;
        // The tiny preset on the CPU: 64 blocks of 16 tokens, routing rows of 3 MoE layers x top-2 uint8 (6 bytes).
        Assert.Equal(96, routing);
        var expected = $"KV pool: device 64 blocks of 16 tokens (1,024 tokens), {Mib(64 * (payload - routing))} of KV; " +
            $"host channels for the same blocks: routing 6.00 KiB; host tier {hostBlocks:N0} blocks ({hostBlocks * 16:N0} tokens), {Mib(hostBlocks * payload)} (allocated as used)";
        Assert.Contains($"routereplay generate: {expected}", stderr);

        await using var server = await CliProcess.StartAsync(_work, "serve", "--port", "0", "--num-blocks", "64", "--swap-space", "0");
        Assert.Contains("routereplay serve: KV pool: device 64 blocks of 16 tokens (1,024 tokens), ", server.Output);
        Assert.Contains("host channels for the same blocks: routing 6.00 KiB; host tier off", server.Output);
    }

    private static string Mib(long bytes) => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):F2} MiB");

    public void Dispose() => Directory.Delete(_work, recursive: true);
}
