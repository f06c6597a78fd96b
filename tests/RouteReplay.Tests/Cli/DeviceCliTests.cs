using System.Diagnostics;
using System.Text.Json;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Cli;

/// <summary>
/// The device flags through the real program, on a machine without a GPU (this one, CI): one clear line naming what
/// is missing, exit code 2, never a stack trace.
/// </summary>
public sealed class DeviceCliTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("routereplay-device-cli-").FullName;

    [Fact]
    public void Device_cuda_without_a_gpu_prints_one_line_naming_what_is_missing()
    {
        var (exit, _, stderr) = Run([], "generate", "--device", "cuda", "--max-tokens", "2");
        AssertOneErrorLine(exit, stderr, "--device cuda");
        var line = ErrorLines(stderr).Single();
        Assert.True(line.Contains("libcuda.so.1", StringComparison.Ordinal) || line.Contains("libroutereplay_cuda.so", StringComparison.Ordinal) || line.Contains("GPU", StringComparison.Ordinal), line);
    }

    [Fact]
    public void A_native_library_path_that_does_not_exist_is_named()
    {
        var (exit, _, stderr) = Run(new() { ["ROUTEREPLAY_CUDA_LIBRARY"] = "/nonexistent/libroutereplay_cuda.so" }, "generate", "--device", "cuda");
        AssertOneErrorLine(exit, stderr, "--device cuda");
        var line = ErrorLines(stderr).Single();
        Assert.True(line.Contains("/nonexistent/libroutereplay_cuda.so", StringComparison.Ordinal) || line.Contains("libcuda.so.1", StringComparison.Ordinal), line);
    }

    [Fact]
    public void Dummy_weights_need_the_gpu_and_a_preset_or_a_model()
    {
        var (exit, _, stderr) = Run([], "generate", "--load-format", "dummy", "--preset", "tiny");
        AssertOneErrorLine(exit, stderr, "--load-format dummy");
        Assert.Contains("--device cuda", ErrorLines(stderr).Single());
        (exit, _, stderr) = Run([], "generate", "--load-format", "dummy", "--device", "cuda");
        AssertOneErrorLine(exit, stderr, "--load-format dummy needs --preset");
        (exit, _, stderr) = Run([], "serve", "--preset", "small");
        AssertOneErrorLine(exit, stderr, "--preset");
    }

    [Fact]
    public void A_gpu_memory_utilization_outside_its_range_names_the_flag()
    {
        var (exit, _, stderr) = Run([], "generate", "--device", "cuda", "--gpu-memory-utilization", "1.5");
        AssertOneErrorLine(exit, stderr, "--gpu-memory-utilization must be in (0, 1]");
    }

    [Fact]
    public void Bench_on_the_cpu_measures_every_shape_with_routing_on_and_off()
    {
        var json = Path.Combine(_work, "bench.json");
        var (exit, stdout, stderr) = Run([], "bench", "--batch-sizes", "1,2", "--prompt-tokens", "8", "--output-tokens", "3",
            "--prefill-requests", "2", "--prefill-tokens", "12", "--rounds", "2", "--json-out", json);
        Assert.True(exit == 0, stderr);
        Assert.Contains("capture on/off, decode batch 2", stdout);
        using var report = JsonDocument.Parse(File.ReadAllText(json));
        var runs = report.RootElement.GetProperty("decode_runs").EnumerateArray().ToArray();
        Assert.Equal(2 * 2 * 2, runs.Length);
        Assert.All(runs, r => Assert.True(r.GetProperty("tokens_per_s").GetDouble() > 0));
        Assert.Equal(2 * 2, report.RootElement.GetProperty("prefill_runs").GetArrayLength());
        var routed = report.RootElement.GetProperty("decode").EnumerateArray().Where(d => d.GetProperty("routing").GetBoolean()).ToArray();
        Assert.All(routed, d => Assert.True(d.GetProperty("distinct_experts_per_step").GetDouble() >= 3 * 2, "each MoE layer routes at least top-k experts"));
        Assert.Equal(3, report.RootElement.GetProperty("capture_on_over_off").GetArrayLength());
    }

    public void Dispose() => Directory.Delete(_work, recursive: true);

    private static string[] ErrorLines(string stderr) =>
        stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Where(l => l.StartsWith("error:", StringComparison.Ordinal)).ToArray();

    private static void AssertOneErrorLine(int exit, string stderr, string expected)
    {
        Assert.Equal(2, exit);
        var errors = ErrorLines(stderr);
        Assert.True(errors.Length == 1, stderr);
        Assert.Contains(expected, errors[0]);
        Assert.DoesNotContain("   at ", stderr);
        Assert.DoesNotContain("Exception", stderr);
    }

    private (int ExitCode, string Stdout, string Stderr) Run(Dictionary<string, string> environment, params string[] args)
    {
        var start = CliProcess.StartInfo(_work, args);
        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(3)), "routereplay did not finish");
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}
