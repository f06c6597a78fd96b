using System.Diagnostics;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Cli;

/// <summary>Runs the real <c>routereplay</c> program as a separate process.</summary>
public sealed class GenerateCliTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("routereplay-cli-").FullName;

    public static (int ExitCode, string Stdout, string Stderr) RunCli(string cacheDir, params string[] args)
    {
        var start = CliProcess.StartInfo(cacheDir, args);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(3)), "routereplay did not finish");
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void Generate_with_no_model_uses_the_tiny_preset_and_writes_routing_as_npy()
    {
        var npy = Path.Combine(_work, "routing.npy");
        var (exit, stdout, stderr) = RunCli(_work, "generate", "--prompt", "Hello, world!", "--max-tokens", "5", "--routing-out", npy);
        Assert.True(exit == 0, stderr);
        Assert.False(string.IsNullOrWhiteSpace(stdout));
        var summary = stderr.Split('\n').Single(l => l.Contains("prompt_tokens=", StringComparison.Ordinal));
        var fields = summary.Split(' ').Select(p => p.Split('=')).ToDictionary(p => p[0], p => p[1]);
        var promptTokens = int.Parse(fields["prompt_tokens"]);
        var generated = int.Parse(fields["generated_tokens"]);
        Assert.Equal(4, promptTokens);
        Assert.InRange(generated, 1, 5);
        Assert.Equal("3", fields["moe_layers"]);
        Assert.Equal("2", fields["top_k"]);

        var array = NpyReader.Read(npy);
        Assert.Equal("|u1", array.Descriptor);
        Assert.Equal(new[] { promptTokens + generated - 1, 3, 2 }, array.Shape);
        Assert.DoesNotContain((byte)255, array.Data);
        Assert.All(array.Data, b => Assert.InRange(b, 0, 7));
    }

    [Fact]
    public void Generate_with_a_seed_is_reproducible_across_processes()
    {
        string[] args = ["generate", "--prompt", "Once upon a time", "--max-tokens", "8", "--temperature", "1", "--seed", "7", "--routing-out"];
        var first = RunCli(_work, [.. args, Path.Combine(_work, "a.npy")]);
        var second = RunCli(_work, [.. args, Path.Combine(_work, "b.npy")]);
        Assert.True(first.ExitCode == 0, first.Stderr);
        Assert.Equal(first.Stdout, second.Stdout);
        Assert.Equal(File.ReadAllBytes(Path.Combine(_work, "a.npy")), File.ReadAllBytes(Path.Combine(_work, "b.npy")));
    }

    [Fact]
    public void A_missing_model_folder_is_a_clear_error()
    {
        var (exit, _, stderr) = RunCli(_work, "generate", "--model", Path.Combine(_work, "nope"), "--prompt", "x");
        Assert.Equal(2, exit);
        Assert.Contains("nope", stderr);
    }

    [Fact]
    public void Make_model_writes_a_checkpoint_that_generate_loads()
    {
        var dir = Path.Combine(_work, "tiny");
        var made = RunCli(_work, "make-model", "--preset", "tiny", "--out", dir, "--seed", "3");
        Assert.True(made.ExitCode == 0, made.Stderr);
        var run = RunCli(_work, "generate", "--model", dir, "--prompt", "Hi", "--chat", "--max-tokens", "3");
        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Contains("prompt_tokens=", run.Stderr);
    }

    [Fact]
    public void A_prompts_file_writes_one_npy_per_request_and_choice_results_and_stats()
    {
        var prompts = Path.Combine(_work, "prompts.jsonl");
        File.WriteAllLines(prompts,
        [
            """{"prompt": "The router picks experts for every token of the prompt and of the output", "max_tokens": 4}""",
            "",
            """{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "n": 2, "seed": 5, "temperature": 6}""",
        ]);
        var routing = Path.Combine(_work, "routing");
        var jsonl = Path.Combine(_work, "out.jsonl");
        var stats = Path.Combine(_work, "stats.json");
        var (exit, _, stderr) = RunCli(_work, "generate", "--prompts-file", prompts, "--routing-dir", routing, "--output-jsonl", jsonl,
            "--stats-json", stats, "--max-num-batched-tokens", "8", "--block-size", "4");
        Assert.True(exit == 0, stderr);
        Assert.Equal(new[] { "0-0.npy", "2-0.npy", "2-1.npy" }, Directory.GetFiles(routing).Select(Path.GetFileName).Order().ToArray());

        var lines = File.ReadAllLines(jsonl).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement).ToArray();
        Assert.Equal(3, lines.Length);
        foreach (var line in lines)
        {
            var prompt = line.GetProperty("prompt_token_ids").GetArrayLength();
            var output = line.GetProperty("output_token_ids").GetArrayLength();
            var npy = NpyReader.Read(Path.Combine(routing, $"{line.GetProperty("line").GetInt32()}-{line.GetProperty("choice").GetInt32()}.npy"));
            Assert.Equal(new[] { prompt + output - 1, 3, 2 }, npy.Shape);
            Assert.Equal(prompt, line.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        }
        var statsJson = System.Text.Json.JsonDocument.Parse(File.ReadAllText(stats)).RootElement;
        Assert.True(statsJson.GetProperty("steps").GetInt32() > 3);
        Assert.Equal(8, statsJson.GetProperty("peak_batched_tokens").GetInt32());
        Assert.Equal(0, statsJson.GetProperty("blocks_used").GetInt32());
    }

    [Fact]
    public void A_bad_line_in_the_prompts_file_names_the_line()
    {
        var prompts = Path.Combine(_work, "bad.jsonl");
        File.WriteAllLines(prompts, ["""{"prompt": "ok"}""", """{"max_tokens": 3}"""]);
        var (exit, _, stderr) = RunCli(_work, "generate", "--prompts-file", prompts);
        Assert.Equal(2, exit);
        Assert.Contains("line 2", stderr);
        Assert.Contains("'prompt' or 'messages'", stderr);
    }

    public void Dispose() => Directory.Delete(_work, recursive: true);
}
