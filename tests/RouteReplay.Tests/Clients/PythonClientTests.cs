using System.Diagnostics;
using System.Text.RegularExpressions;

namespace RouteReplay.Tests.Clients;

/// <summary>
/// The Python client's pytest suite (<c>clients/python/tests</c>), run as a process against the CLI built next to these
/// tests (its end-to-end tests start a real <c>serve</c>). The interpreter is <c>ROUTEREPLAY_PYTHON</c>, else
/// <c>/usr/bin/python3</c> where it exists (Debian's, with <c>python3-numpy</c> and <c>python3-pytest</c>), else
/// <c>python3</c>.
/// </summary>
public sealed partial class PythonClientTests : IDisposable
{
    /// <summary>Fewer passed tests than this means pytest collected less than the suite holds.</summary>
    private const int MinimumPassed = 41;

    private readonly string _cache = Directory.CreateTempSubdirectory("routereplay-python-client-").FullName;

    [Fact]
    public async Task The_python_client_suite_passes_against_a_real_serve_process()
    {
        var start = new ProcessStartInfo(Python())
        {
            WorkingDirectory = RepositoryRoot(),
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in (string[])["-m", "pytest", "clients/python/tests", "-q", "-rfEs"])
        {
            start.ArgumentList.Add(arg);
        }
        start.Environment["ROUTEREPLAY_CLI"] = Path.Combine(AppContext.BaseDirectory, "routereplay.dll");
        start.Environment["ROUTEREPLAY_DOTNET"] = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";
        start.Environment["ROUTEREPLAY_CACHE"] = _cache;
        start.Environment["PYTHONDONTWRITEBYTECODE"] = "1";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            Assert.Fail($"pytest ran past 5 minutes:\n{await stdout}\n{await stderr}");
        }
        var output = $"{await stdout}\n{await stderr}";
        Assert.True(process.ExitCode == 0, $"{start.FileName} -m pytest exited with {process.ExitCode}:\n{output}");
        var passed = Passed().Match(output);
        Assert.True(passed.Success, $"no pytest summary in the output:\n{output}");
        Assert.True(int.Parse(passed.Groups["count"].Value) >= MinimumPassed, $"fewer than {MinimumPassed} tests passed:\n{output}");
        Assert.False(Skipped().IsMatch(output), $"pytest skipped tests:\n{output}");
    }

    public void Dispose() => Directory.Delete(_cache, recursive: true);

    private static string Python()
    {
        if (Environment.GetEnvironmentVariable("ROUTEREPLAY_PYTHON") is { Length: > 0 } configured)
        {
            return configured;
        }
        return File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
    }

    /// <summary>The checkout these tests were built from: the first folder above the test output that holds <c>RouteReplay.slnx</c>.</summary>
    private static string RepositoryRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, "RouteReplay.slnx")))
            {
                return folder.FullName;
            }
        }
        throw new InvalidOperationException($"no RouteReplay.slnx above {AppContext.BaseDirectory}");
    }

    [GeneratedRegex(@"\b(?<count>\d+) passed\b")]
    private static partial Regex Passed();

    [GeneratedRegex(@"\b\d+ skipped\b")]
    private static partial Regex Skipped();
}
