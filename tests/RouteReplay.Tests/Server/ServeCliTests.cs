using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>
/// The real <c>routereplay serve</c> process: starts with no model, answers, and on SIGTERM ends a request still running
/// after the grace period with finish reason abort and <c>[DONE]</c>, then exits 0.
/// </summary>
public sealed partial class ServeCliTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("routereplay-serve-").FullName;

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);

    [Fact]
    public async Task Serve_with_no_arguments_but_a_free_port_serves_the_tiny_preset_aborts_what_runs_and_exits_0_on_sigterm()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            return;
        }
        var start = CliProcess.StartInfo(_work, ["serve", "--port", "0", "--num-blocks", "256", "--shutdown-grace-seconds", "0.5"]);
        using var process = Process.Start(start)!;
        var address = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var output = new System.Collections.Concurrent.ConcurrentQueue<string>();
        void Watch(string? line)
        {
            if (line is null)
            {
                return;
            }
            output.Enqueue(line);
            if (ServingLine().Match(line) is { Success: true } match)
            {
                address.TrySetResult(match.Groups["url"].Value);
            }
        }
        process.OutputDataReceived += (_, e) => Watch(e.Data);
        process.ErrorDataReceived += (_, e) => Watch(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var url = await address.Task.WaitAsync(TimeSpan.FromMinutes(2));
            using var client = new HttpClient { BaseAddress = new Uri(url) };
            Assert.Equal("OK\n", await client.GetStringAsync("/health"));
            using var response = await client.PostAsync("/generate", new StringContent("""{"text": "Hello", "sampling_params": {"max_new_tokens": 3}, "return_routed_experts": true}"""));
            Assert.Equal(200, (int)response.StatusCode);
            Assert.Contains("routed_experts", await response.Content.ReadAsStringAsync());

            using var running = await client.SendAsync(
                new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
                {
                    Content = new StringContent("""{"prompt": "run until stopped", "max_tokens": 3500, "ignore_eos": true, "stream": true}"""),
                },
                HttpCompletionOption.ResponseHeadersRead);
            using var reader = new StreamReader(await running.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: ", await reader.ReadLineAsync());
            Assert.Equal(0, kill(process.Id, 15));
            var events = new List<string>();
            string? line;
            while ((line = await reader.ReadLineAsync()) is not null)
            {
                if (line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    events.Add(line);
                }
            }
            Assert.Equal("data: [DONE]", events[^1]);
            Assert.Contains("\"finish_reason\":\"abort\"", events[^2]);
            Assert.True(process.WaitForExit(TimeSpan.FromSeconds(60)), "serve did not stop on SIGTERM");
            process.WaitForExit();
            Assert.True(process.ExitCode == 0, string.Join('\n', output));
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
            }
        }
    }

    [Fact]
    public async Task A_relative_model_folder_is_reported_as_written_and_the_model_is_named_after_its_folder()
    {
        using var model = new TinyModelFixture();
        var relative = Path.GetRelativePath(Environment.CurrentDirectory, model.Directory);
        Assert.False(Path.IsPathFullyQualified(relative));
        await using var serve = await CliProcess.StartAsync(_work, "serve", "--model", relative, "--port", "0", "--num-blocks", "256");

        using var info = System.Text.Json.JsonDocument.Parse(await serve.Client.GetStringAsync("/get_model_info"));
        Assert.Equal(relative, info.RootElement.GetProperty("model_path").GetString());
        Assert.Equal(Path.GetFileName(model.Directory), info.RootElement.GetProperty("served_model_name").GetString());
    }

    public void Dispose() => Directory.Delete(_work, recursive: true);

    [GeneratedRegex(@"Serving '.*' on (?<url>http://[^ ]+)")]
    private static partial Regex ServingLine();
}
