using System.Text;
using Microsoft.Extensions.Logging;
using RouteReplay.Backends;
using RouteReplay.Server;
using RouteReplay.Tests.Support;
using static RouteReplay.Tests.Support.Eventually;

namespace RouteReplay.Tests.Server;

/// <summary>
/// A device fault stops the server: requests in flight end with an error (a 500, or an error event and
/// <c>[DONE]</c> in a stream), never a hang; the server logs one line and <see cref="RolloutServer.RunAsync"/> ends with
/// <see cref="EngineStoppedException"/>, which <c>routereplay serve</c> turns into exit code 1.
/// </summary>
public sealed class DeviceFaultServerTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private const int Marker = 40000;

    [Fact]
    public async Task A_device_fault_fails_the_requests_in_flight_and_stops_the_server()
    {
        var engine = EngineRunner.CreateWrapped(model, TestServer.DefaultEngineOptions, inner => new FaultyBackend(inner, FaultyBackend.OnToken(Marker), error: m => new DeviceFaultException(m)));
        var options = new ServerOptions { ModelPath = model.Directory, Port = 0, ServedModelName = "tiny", ShutdownGracePeriod = TimeSpan.FromSeconds(5) };
        var logs = new LogLines();
        await using var server = RolloutServer.Create(engine, options, TestServer.WeightsVersion, logging => logging.ClearProviders().AddProvider(logs));
        var run = server.RunAsync();
        await WaitUntilAsync(() => Task.FromResult(Started(server)), "the server listens");
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromMinutes(1) };

        var streamed = client.PostAsync("/v1/completions", Json("""{"prompt": "Keep going for a long time", "max_tokens": 3000, "ignore_eos": true, "stream": true}"""));
        await WaitUntilAsync(async () => await server.Host.Engine.InvokeAsync(e => e.Stats.GeneratedTokens > 2), "the stream runs");
        using var faulted = await client.PostAsync("/v1/completions", Json($$"""{"prompt": [9707, 11, {{Marker}}], "max_tokens": 4}"""));

        Assert.Equal(500, (int)faulted.StatusCode);
        Assert.Contains("device_fault", await faulted.Content.ReadAsStringAsync());
        using var stream = await streamed.WaitAsync(TimeSpan.FromSeconds(30));
        var events = await stream.Content.ReadAsStringAsync();
        Assert.Contains("device_fault", events);
        Assert.EndsWith("data: [DONE]\n\n", events);
        var stopped = await Assert.ThrowsAsync<EngineStoppedException>(() => run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.IsType<DeviceFaultException>(stopped.InnerException);
        var critical = Assert.Single(logs.Lines, l => l.Level >= LogLevel.Error);
        Assert.Equal(LogLevel.Critical, critical.Level);
        Assert.Contains("simulated fault in the forward", critical.Message);
        await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync("/health"));
    }

    private static bool Started(RolloutServer server)
    {
        try
        {
            return server.BaseAddress.Port > 0;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    /// <summary>Collects every log line (level and message) the server writes.</summary>
    private sealed class LogLines : ILoggerProvider
    {
        private readonly List<(LogLevel Level, string Message)> _lines = [];

        public IReadOnlyList<(LogLevel Level, string Message)> Lines
        {
            get
            {
                lock (_lines)
                {
                    return [.. _lines];
                }
            }
        }

        public ILogger CreateLogger(string categoryName) => new Logger(this);

        public void Dispose()
        {
        }

        private sealed class Logger(LogLines owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                lock (owner._lines)
                {
                    owner._lines.Add((logLevel, formatter(state, exception)));
                }
            }
        }
    }
}
