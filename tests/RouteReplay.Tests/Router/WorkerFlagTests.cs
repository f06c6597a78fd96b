using RouteReplay.Tests.Cli;

namespace RouteReplay.Tests.Router;

/// <summary>
/// The router's worker flags fail as every other flag does: one line naming the flag, exit 2, before any server is
/// contacted; <c>--worker</c> and <c>--prefill</c>/<c>--decode</c> may not be mixed, and the worker-only flags need
/// <c>--worker</c>. A worker that never answers is a clear error too.
/// </summary>
public sealed class WorkerFlagTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("routereplay-worker-flags-").FullName;

    private string FailLine(int exitCode, params string[] args)
    {
        var (exit, stdout, stderr) = GenerateCliTests.RunCli(_work, args);
        Assert.True(exit == exitCode, $"'{string.Join(' ', args)}' exited {exit}: {stdout}{stderr}");
        Assert.DoesNotContain("   at ", stderr);
        return Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), l => l.StartsWith("error: ", StringComparison.Ordinal));
    }

    public static TheoryData<string, string[]> BadFlags => new()
    {
        { "--worker and --prefill/--decode cannot be mixed", ["router", "--worker", "http://127.0.0.1:1", "--prefill", "http://127.0.0.1:2"] },
        { "--worker and --prefill/--decode cannot be mixed", ["router", "--worker", "http://127.0.0.1:1", "--decode", "http://127.0.0.1:2"] },
        { "--worker and --prefill/--decode cannot be mixed", ["router", "--prefill", "http://127.0.0.1:2", "--worker", "http://127.0.0.1:1", "--decode", "http://127.0.0.1:3"] },
        { "--worker is required at least once (the URL of a plain serve, for data-parallel serving), or else --prefill and --decode", ["router"] },
        { "--policy applies to --worker only", ["router", "--prefill", "http://127.0.0.1:2", "--decode", "http://127.0.0.1:3", "--policy", "round_robin"] },
        { "--balance-abs-threshold applies to --worker only", ["router", "--prefill", "http://127.0.0.1:2", "--decode", "http://127.0.0.1:3", "--balance-abs-threshold", "3"] },
        { "--policy must be one of cache_aware, round_robin, least_load, got 'random'", ["router", "--worker", "http://127.0.0.1:1", "--policy", "random"] },
        { "--balance-abs-threshold must be >= 0, got -1", ["router", "--worker", "http://127.0.0.1:1", "--balance-abs-threshold", "-1"] },
        { "--balance-rel-threshold must be a number >= 1, got 0.5", ["router", "--worker", "http://127.0.0.1:1", "--balance-rel-threshold", "0.5"] },
        { "--max-tree-size must be >= 1, got 0", ["router", "--worker", "http://127.0.0.1:1", "--max-tree-size", "0"] },
        { "--worker 'ftp://x' is not an http:// URL", ["router", "--worker", "ftp://x"] },
        { "--worker must be a server's base URL like http://127.0.0.1:8001, got 'http://127.0.0.1:1/v1'", ["router", "--worker", "http://127.0.0.1:1/v1"] },
        { "--worker names the server http://127.0.0.1:1/ twice", ["router", "--worker", "http://127.0.0.1:1", "--worker", "http://127.0.0.1:1"] },
        { "--cluster-key applies to --prefill/--decode only (workers take no transfers)", ["router", "--worker", "http://127.0.0.1:1", "--cluster-key", "0123456789abcdef0123"] },
    };

    [Theory]
    [MemberData(nameof(BadFlags))]
    public void A_bad_worker_flag_is_one_line_naming_it(string message, string[] args) =>
        Assert.Contains(message, FailLine(2, args));

    [Fact]
    public void A_worker_that_never_answers_is_named_with_the_flag_and_the_timeout()
    {
        var line = FailLine(1, "router", "--port", "0", "--worker", "http://127.0.0.1:1", "--startup-timeout-seconds", "0.5");
        Assert.Contains("--worker http://127.0.0.1:1 did not answer within 0.5 s (--startup-timeout-seconds)", line);
    }

    public void Dispose() => Directory.Delete(_work, recursive: true);
}
