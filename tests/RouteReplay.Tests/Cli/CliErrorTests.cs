using System.Net;
using System.Net.Sockets;

namespace RouteReplay.Tests.Cli;

/// <summary>
/// Every expected failure of a command is one clear line on stderr naming the flag or field the user wrote, with a
/// non-zero exit: never a stack trace or a .NET type name. Checks of flags and paths happen before the model loads.
/// </summary>
public sealed class CliErrorTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("routereplay-cli-errors-").FullName;

    private string Work(string name) => Path.Combine(_work, name);

    private bool ModelWasMade => Directory.Exists(Path.Combine(_work, "models"));

    private (int ExitCode, string Line) Fail(params string[] args)
    {
        var (exit, stdout, stderr) = GenerateCliTests.RunCli(_work, args);
        Assert.True(exit != 0, $"'{string.Join(' ', args)}' succeeded: {stdout}{stderr}");
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => !l.StartsWith("routereplay serve: ", StringComparison.Ordinal) && !l.StartsWith("routereplay generate: ", StringComparison.Ordinal) && !l.StartsWith("Making the built-in", StringComparison.Ordinal))
            .ToArray();
        var line = Assert.Single(lines);
        Assert.StartsWith("error: ", line);
        foreach (var internals in new[] { "(Parameter", "System.", "Exception", "   at ", "Nullable", "Int32", "RouteReplay.Engine" })
        {
            Assert.DoesNotContain(internals, line);
        }
        return (exit, line);
    }

    public static TheoryData<string, string[]> BadFlags => new()
    {
        { "--max-tokens", ["generate", "--max-tokens", "abc"] },
        { "--seed", ["generate", "--seed", "-1"] },
        { "--preemption-mode", ["generate", "--preemption-mode", "sometimes"] },
        { "--block-size", ["generate", "--block-size", "0"] },
        { "--top-p", ["generate", "--top-p", "2"] },
        { "--temperature", ["generate", "--temperature", "-1"] },
        { "--swap-space", ["serve", "--swap-space", "lots"] },
        { "--port", ["serve", "--port", "abc"] },
        { "--port", ["serve", "--port", "70000"] },
        { "--host", ["serve", "--host", "not an address", "--port", "0"] },
        { "--shutdown-grace-seconds", ["serve", "--shutdown-grace-seconds", "-1"] },
        { "--keep-alive-seconds", ["serve", "--keep-alive-seconds", "0"] },
        { "--sleep-wait-timeout-seconds", ["serve", "--sleep-wait-timeout-seconds", "-1"] },
        { "--sleep-wait-timeout-seconds", ["serve", "--sleep-wait-timeout-seconds", "nan"] },
        { "--keep-alive-seconds", ["router", "--prefill", "http://127.0.0.1:1", "--decode", "http://127.0.0.1:2", "--keep-alive-seconds", "nan"] },
        { "--routing", ["bench-serve", "--routing", "sideways"] },
        { "--timeout-seconds", ["bench-serve", "--timeout-seconds", "0"] },
        { "--preset", ["make-model", "--preset", "huge", "--out", "x"] },
        { "--bogus", ["generate", "--bogus", "1"] },
        { "--chat", ["generate", "--system", "Be brief."] },
        { "--no-thinking", ["generate", "--no-thinking"] },
    };

    [Theory]
    [MemberData(nameof(BadFlags))]
    public void A_bad_flag_is_one_line_naming_it_before_any_model_loads(string flag, string[] args)
    {
        var (exit, line) = Fail(args);
        Assert.Equal(2, exit);
        Assert.Contains(flag, line);
        Assert.False(ModelWasMade, "the model was made before the flags were checked");
    }

    [Fact]
    public void Output_paths_that_cannot_be_written_are_refused_before_the_model_loads()
    {
        var file = Work("a-file");
        File.WriteAllText(file, "not a folder");
        var folder = Directory.CreateDirectory(Work("a-folder")).FullName;
        var prompts = Work("prompts.jsonl");
        File.WriteAllText(prompts, """{"prompt": "x"}""" + "\n");
        (string Flag, string[] Args)[] cases =
        [
            ("--routing-out", ["generate", "--routing-out", Path.Combine(Work("missing"), "r.npy")]),
            ("--routing-out", ["generate", "--routing-out", Path.Combine(file, "r.npy")]),
            ("--output-jsonl", ["generate", "--output-jsonl", folder]),
            ("--stats-json", ["generate", "--stats-json", Path.Combine(file, "stats.json")]),
            ("--routing-dir", ["generate", "--prompts-file", prompts, "--routing-dir", file]),
            ("--json-out", ["bench-serve", "--url", "http://127.0.0.1:9", "--json-out", Path.Combine(Work("missing"), "bench.json")]),
        ];
        foreach (var (flag, args) in cases)
        {
            var (exit, line) = Fail(args);
            Assert.Equal(2, exit);
            Assert.Contains(flag, line);
        }
        Assert.False(ModelWasMade, "the model was made before the output paths were checked");
    }

    [Fact]
    public void Flags_that_do_not_apply_to_the_mode_are_refused()
    {
        var prompts = Work("prompts.jsonl");
        File.WriteAllText(prompts, """{"prompt": "x"}""" + "\n");
        Assert.Contains("--chat", Fail("generate", "--prompts-file", prompts, "--chat").Line);
        Assert.Contains("--routing-out", Fail("generate", "--prompts-file", prompts, "--routing-out", Work("r.npy")).Line);
        Assert.Contains("--routing-dir", Fail("generate", "--routing-dir", Work("routing")).Line);
        Assert.Contains("--prompt", Fail("generate", "--prompts-file", prompts, "--prompt", "both").Line);
        Assert.False(ModelWasMade);
    }

    [Fact]
    public void Block_store_flags_that_cannot_work_name_the_flag_before_the_model_loads()
    {
        var file = Work("kv-is-a-file");
        File.WriteAllText(file, "not a folder");
        var line = Fail("generate", "--kv-store", $"file:{file}").Line;
        Assert.Contains("--kv-store", line);
        Assert.Contains("is a file", line);

        line = Fail("serve", "--kv-store", "redis://127.0.0.1", "--port", "0").Line;
        Assert.Contains("--kv-store", line);
        Assert.Contains("has no port", line);

        (string Flag, string Value)[] settings =
        [
            ("--kv-store-write", "evict"), ("--kv-store-max-gib", "1"), ("--kv-store-ttl-seconds", "60"),
            ("--kv-store-timeout-ms", "100"), ("--kv-store-retry-max-ms", "100"), ("--kv-store-queue-size", "4"),
        ];
        foreach (var (flag, value) in settings)
        {
            var (exit, orphan) = Fail("generate", flag, value);
            Assert.Equal(2, exit);
            Assert.Contains($"{flag} needs --kv-store", orphan);
        }
        Assert.False(ModelWasMade, "the model was made before the store flags were checked");
    }

    [Fact]
    public void Model_folders_that_are_not_checkpoints_and_bad_prompt_lines_name_what_is_wrong()
    {
        var file = Work("weights.bin");
        File.WriteAllText(file, "not a checkpoint");
        Assert.Contains("--model", Fail("generate", "--model", file).Line);
        Assert.Contains("--model", Fail("generate", "--model", Work("no-such-model")).Line);
        Assert.Contains("config.json", Fail("generate", "--model", Directory.CreateDirectory(Work("empty")).FullName).Line);

        var prompts = Work("bad.jsonl");
        File.WriteAllLines(prompts, ["""{"prompt": "ok"}""", """{"prompt": "x", "max_tokens": "ten"}"""]);
        var line = Fail("generate", "--prompts-file", prompts).Line;
        Assert.Contains("line 2", line);
        Assert.Contains("max_tokens", line);
        Assert.Contains("--prompts-file", Fail("generate", "--prompts-file", Work("missing.jsonl")).Line);
        Assert.False(ModelWasMade);
    }

    [Fact]
    public void A_busy_port_is_one_line_naming_it_and_the_flag()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var (exit, line) = Fail("serve", "--port", port, "--num-blocks", "16");
        Assert.Equal(1, exit);
        Assert.Contains(port, line);
        Assert.Contains("--port", line);
        Assert.False(ModelWasMade, "the model was loaded before the port was found busy");
    }

    [Fact]
    public void Bench_serve_against_an_unreachable_server_is_one_line_naming_the_url()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var url = $"http://127.0.0.1:{port}";
        var (exit, line) = Fail("bench-serve", "--url", url, "--requests", "1", "--warmup", "0");
        Assert.Equal(1, exit);
        Assert.Contains(url, line);
    }

    [Fact]
    public void An_explicit_max_tokens_beyond_the_model_length_names_the_flag_and_both_lengths()
    {
        var (exit, line) = Fail("generate", "--prompt", "Hello there", "--max-tokens", "100", "--max-model-len", "64");
        Assert.Equal(2, exit);
        Assert.Contains("--max-tokens", line);
        Assert.Contains("64 tokens", line);
        Assert.Contains("in the prompt", line);

        var (ok, _, stderr) = GenerateCliTests.RunCli(_work, "generate", "--prompt", "Hello there", "--max-model-len", "8");
        Assert.True(ok == 0, stderr);
    }

    [Fact]
    public void A_preset_name_is_a_model()
    {
        var (exit, stdout, stderr) = GenerateCliTests.RunCli(_work, "generate", "--model", "tiny", "--prompt", "Hi", "--max-tokens", "2");
        Assert.True(exit == 0, stderr);
        Assert.Contains("prompt_tokens=", stderr);
        Assert.False(string.IsNullOrEmpty(stdout));
    }

    public void Dispose() => Directory.Delete(_work, recursive: true);
}
