using System.Net;
using System.Net.Sockets;
using RouteReplay.Tests.Cli;

namespace RouteReplay.Tests.Disaggregation;

/// <summary>
/// The prefill/decode flags and the router fail like every other command: one line naming the flag, before any model
/// loads; a router whose servers never answer, or a transfer port in use, is a clear error too.
/// </summary>
public sealed class PdCliErrorTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("routereplay-pd-cli-").FullName;

    private (int ExitCode, string Line) Fail(params string[] args)
    {
        var (exit, stdout, stderr) = GenerateCliTests.RunCli(_work, args);
        Assert.True(exit != 0, $"'{string.Join(' ', args)}' succeeded: {stdout}{stderr}");
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), l => l.StartsWith("error: ", StringComparison.Ordinal));
        Assert.DoesNotContain("   at ", stderr);
        Assert.DoesNotContain("(Parameter", line);
        return (exit, line);
    }

    public static TheoryData<string, string[]> BadFlags => new()
    {
        { "--role must be one of both, prefill, decode, got 'sideways'", ["serve", "--role", "sideways"] },
        { "--transfer-port applies to --role prefill only", ["serve", "--role", "decode", "--transfer-port", "9000"] },
        { "--pd-hold-timeout-ms applies to --role prefill only", ["serve", "--pd-hold-timeout-ms", "100"] },
        { "--pd-fallback applies to --role decode only", ["serve", "--role", "prefill", "--pd-fallback", "error"] },
        { "--pd-fallback must be one of local, error, got 'retry'", ["serve", "--role", "decode", "--pd-fallback", "retry"] },
        { "--pd-transfer-timeout-ms must be in 4..600000, got 0", ["serve", "--role", "decode", "--pd-transfer-timeout-ms", "0"] },
        { "--transfer-port must be in 0..65535, got 70000", ["serve", "--role", "prefill", "--transfer-port", "70000"] },
        { "--prefill is required at least once", ["router", "--decode", "http://127.0.0.1:1"] },
        { "--decode is required at least once", ["router", "--prefill", "http://127.0.0.1:1"] },
        { "--prefill 'ftp://x' is not an http:// URL", ["router", "--prefill", "ftp://x", "--decode", "http://127.0.0.1:1"] },
        { "--decode must be a server's base URL like http://127.0.0.1:8001, got 'http://127.0.0.1:1/v1'", ["router", "--prefill", "http://127.0.0.1:2", "--decode", "http://127.0.0.1:1/v1"] },
        { "--cluster-key and --cluster-key-file apply to --role prefill or decode only", ["serve", "--cluster-key", "0123456789abcdef0123"] },
        { "--prefill-peers applies to --role decode only", ["serve", "--role", "prefill", "--prefill-peers", "127.0.0.1:9000"] },
        { "--prefill-peers must list prefill transfer addresses as host:port, comma-separated: 'nowhere' is not host:port", ["serve", "--role", "decode", "--prefill-peers", "nowhere"] },
        { "--cluster-key holds a key of 5 characters; a cluster key needs at least 16", ["serve", "--role", "decode", "--cluster-key", "short"] },
        { "give --cluster-key or --cluster-key-file, not both", ["serve", "--role", "prefill", "--cluster-key", "0123456789abcdef0123", "--cluster-key-file", "key.txt"] },
        { "--cluster-key-file '/no/such/key' cannot be read: ", ["router", "--prefill", "http://127.0.0.1:2", "--decode", "http://127.0.0.1:1", "--cluster-key-file", "/no/such/key"] },
    };

    [Theory]
    [MemberData(nameof(BadFlags))]
    public void A_bad_prefill_decode_flag_is_one_line_naming_it_before_any_model_loads(string message, string[] args)
    {
        var (exit, line) = Fail(args);
        Assert.Equal(2, exit);
        Assert.Contains(message, line);
        Assert.False(Directory.Exists(Path.Combine(_work, "models")), "the model loaded before the flags were checked");
    }

    [Fact]
    public void A_router_whose_servers_never_answer_and_a_transfer_port_in_use_are_clear_errors()
    {
        var (exit, line) = Fail("router", "--port", "0", "--prefill", "http://127.0.0.1:1", "--decode", "http://127.0.0.1:2", "--startup-timeout-seconds", "0.5");
        Assert.Equal(1, exit);
        Assert.Contains("--prefill http://127.0.0.1:1 did not answer within 0.5 s (--startup-timeout-seconds)", line);

        using var busy = new TcpListener(IPAddress.Loopback, 0);
        busy.Start();
        var port = ((IPEndPoint)busy.LocalEndpoint).Port;
        (exit, line) = Fail("serve", "--role", "prefill", "--port", "0", "--transfer-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(1, exit);
        Assert.Contains($"cannot listen on 127.0.0.1:{port}: the port is already in use (another server?); choose another --transfer-port", line);
    }

    public void Dispose() => Directory.Delete(_work, recursive: true);
}
