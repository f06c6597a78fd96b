using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace RouteReplay.Tests.Support;

/// <summary>
/// A long-running <c>routereplay</c> process (<c>serve</c> or <c>router</c>) on loopback: started, waited for until it
/// logs its listening address, and then talked to over HTTP, signalled (stop, freeze, resume), killed and read for
/// metrics.
/// </summary>
public sealed partial class CliProcess : IAsyncDisposable
{
    private const int SigKill = 9;
    private const int SigTerm = 15;
    private const int SigCont = 18;
    private const int SigStop = 19;

    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();

    private CliProcess(Process process, Uri url)
    {
        _process = process;
        Url = url;
        Client = new HttpClient { BaseAddress = url, Timeout = TimeSpan.FromMinutes(3) };
    }

    public Uri Url { get; }

    public HttpClient Client { get; }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>Everything the process wrote so far, stdout and stderr.</summary>
    public string Output => string.Join('\n', _output);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Signal(int pid, int signal);

    /// <summary>How to start <c>routereplay <paramref name="args"/></c> from the test output folder, with its own model cache and its output redirected.</summary>
    public static ProcessStartInfo StartInfo(string cacheDir, IEnumerable<string> args)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "routereplay.dll"));
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        start.Environment["ROUTEREPLAY_CACHE"] = cacheDir;
        return start;
    }

    /// <summary>Starts <c>routereplay <paramref name="args"/></c> and returns once it logs the address it serves on.</summary>
    public static Task<CliProcess> StartAsync(string cacheDir, params string[] args) => StartAsync(StartInfo(cacheDir, args), args);

    /// <summary>
    /// As <see cref="StartAsync(string, string[])"/>, under an open-files limit of <paramref name="openFiles"/> (soft and
    /// hard, as <c>ulimit -n</c> sets them; the shell execs the process, so <see cref="Id"/> is its id). Needs bash.
    /// </summary>
    public static Task<CliProcess> StartWithOpenFilesLimitAsync(string cacheDir, int openFiles, params string[] args)
    {
        var inner = StartInfo(cacheDir, args);
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in (string[])["-c", $"ulimit -n {openFiles} && exec \"$0\" \"$@\"", inner.FileName, .. inner.ArgumentList])
        {
            start.ArgumentList.Add(arg);
        }
        foreach (var (name, value) in inner.Environment)
        {
            start.Environment[name] = value;
        }
        return StartAsync(start, args);
    }

    private static async Task<CliProcess> StartAsync(ProcessStartInfo start, string[] args)
    {
        var process = Process.Start(start)!;
        var address = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        var output = new ConcurrentQueue<string>();
        void Watch(string? line)
        {
            if (line is null)
            {
                return;
            }
            output.Enqueue(line);
            if (ListeningLine().Match(line) is { Success: true } match)
            {
                address.TrySetResult(new Uri(match.Groups["url"].Value));
            }
        }
        process.OutputDataReceived += (_, e) => Watch(e.Data);
        process.ErrorDataReceived += (_, e) => Watch(e.Data);
        process.Exited += (_, _) => address.TrySetException(new Xunit.Sdk.XunitException($"routereplay {string.Join(' ', args)} exited with {process.ExitCode}:\n{string.Join('\n', output)}"));
        process.EnableRaisingEvents = true;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var url = await address.Task.WaitAsync(TimeSpan.FromMinutes(2));
            var cli = new CliProcess(process, url);
            while (output.TryDequeue(out var line))
            {
                cli._output.Enqueue(line);
            }
            process.OutputDataReceived += (_, e) => cli.Append(e.Data);
            process.ErrorDataReceived += (_, e) => cli.Append(e.Data);
            return cli;
        }
        catch
        {
            if (!process.HasExited)
            {
                process.Kill();
            }
            throw;
        }
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            _output.Enqueue(line);
        }
    }

    /// <summary>The prefill server's transfer port, from <c>/get_model_info</c>.</summary>
    public async Task<int> TransferPortAsync()
    {
        using var document = JsonDocument.Parse(await Client.GetStringAsync("/get_model_info"));
        return document.RootElement.GetProperty("transfer_port").GetInt32();
    }

    /// <summary>Every sample of <c>/metrics</c>, keyed by name with labels as written (<c>name{a="b"}</c>).</summary>
    public Task<Dictionary<string, double>> MetricsAsync() => MetricsAsync(Client);

    /// <summary>Every sample of <c>/metrics</c> read through <paramref name="client"/>, as <see cref="MetricsAsync()"/>.</summary>
    public static async Task<Dictionary<string, double>> MetricsAsync(HttpClient client) => PrometheusText.Parse(await client.GetStringAsync("/metrics"));

    /// <summary>Polls <c>/metrics</c> until <paramref name="condition"/> holds, or fails after <paramref name="timeout"/>.</summary>
    public async Task<Dictionary<string, double>> WaitForMetricsAsync(Func<Dictionary<string, double>, bool> condition, TimeSpan timeout, string what, int pollMilliseconds = 5)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var metrics = await MetricsAsync();
            if (condition(metrics))
            {
                return metrics;
            }
            if (deadline.Elapsed > timeout)
            {
                var shown = new StringBuilder();
                foreach (var (name, value) in metrics.Where(m => m.Key.Contains("_pd_", StringComparison.Ordinal) || m.Key.StartsWith("routereplay_blocks", StringComparison.Ordinal)))
                {
                    shown.Append(name).Append(' ').Append(value).Append('\n');
                }
                throw new Xunit.Sdk.XunitException($"{Url}: {what} did not happen within {timeout.TotalSeconds} s; metrics:\n{shown}\noutput:\n{Output}");
            }
            await Task.Delay(pollMilliseconds);
        }
    }

    /// <summary>Freezes the process (SIGSTOP): it neither computes nor answers until <see cref="Resume"/>.</summary>
    public void Freeze() => Assert.Equal(0, Signal(_process.Id, SigStop));

    public void Resume() => Assert.Equal(0, Signal(_process.Id, SigCont));

    /// <summary>SIGTERM: the process shuts down as on Ctrl-C (see <see cref="WaitForExitAsync"/>).</summary>
    public void Terminate() => Assert.Equal(0, Signal(_process.Id, SigTerm));

    /// <summary>Waits for the process to exit (failing after <paramref name="timeout"/>) and returns its exit code.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(deadline.Token);
        return _process.ExitCode;
    }

    /// <summary>Waits until the output holds a line containing <paramref name="text"/> (polling; fails after <paramref name="timeout"/>) and returns that line.</summary>
    public async Task<string> WaitForOutputAsync(string text, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (_output.FirstOrDefault(line => line.Contains(text, StringComparison.Ordinal)) is { } line)
            {
                return line;
            }
            if (deadline.Elapsed > timeout)
            {
                throw new Xunit.Sdk.XunitException($"{Url}: no line with '{text}' within {timeout.TotalSeconds} s; output:\n{Output}");
            }
            await Task.Delay(20);
        }
    }

    /// <summary>The lines of the output that contain <paramref name="text"/>.</summary>
    public string[] Lines(string text) => [.. _output.Where(line => line.Contains(text, StringComparison.Ordinal))];

    /// <summary>SIGKILL: the process dies at once; the kernel closes its sockets.</summary>
    public void Kill()
    {
        Signal(_process.Id, SigKill);
        _process.WaitForExit(TimeSpan.FromSeconds(30));
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        if (!_process.HasExited)
        {
            Signal(_process.Id, SigCont);
            Signal(_process.Id, SigTerm);
            using var exited = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            try
            {
                await _process.WaitForExitAsync(exited.Token);
            }
            catch (OperationCanceledException)
            {
                _process.Kill();
            }
        }
        _process.Dispose();
    }

    [GeneratedRegex(@"(?:Serving '.*'|Routing) on (?<url>http://[^ ]+)")]
    private static partial Regex ListeningLine();
}
