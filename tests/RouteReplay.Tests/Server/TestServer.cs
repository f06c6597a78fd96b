using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using RouteReplay.Backends;
using RouteReplay.Engine;
using RouteReplay.Server;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>A real Kestrel server on a free loopback port over a model folder, with an HttpClient pointed at it.</summary>
public sealed class TestServer : IAsyncDisposable
{
    public const string WeightsVersion = "test";

    private TestServer(RolloutServer server, HttpClient client)
    {
        Server = server;
        Client = client;
    }

    public RolloutServer Server { get; }

    public HttpClient Client { get; }

    public Uri BaseAddress => Server.BaseAddress;

    public AsyncEngine Engine => Server.Host.Engine;

    /// <summary>The engine options tests use unless they say otherwise: a small pool, short model length.</summary>
    public static EngineOptions DefaultEngineOptions => new() { NumBlocks = 256, MaxModelLen = 4096, MaxNumSeqs = 16, WeightsVersion = WeightsVersion };

    /// <param name="wrapBackend">Wraps the CPU backend (tests that script the model's output).</param>
    /// <param name="configureEngine">Sees the engine before the server runs it (tests attach recorders).</param>
    public static async Task<TestServer> StartAsync(string modelDir, Func<ServerOptions, ServerOptions>? configure = null, EngineOptions? engineOptions = null, Func<IModelBackend, IModelBackend>? wrapBackend = null, Action<LlmEngine>? configureEngine = null)
    {
        var options = new ServerOptions { ModelPath = modelDir, Port = 0, ServedModelName = "tiny", ShutdownGracePeriod = TimeSpan.FromSeconds(2) };
        options = configure?.Invoke(options) ?? options;
        var resolved = (engineOptions ?? DefaultEngineOptions).Validate();
        var engine = wrapBackend is null ? LoadedModel.LoadCpu(modelDir, resolved) : WrappedEngine.Load(modelDir, resolved, wrapBackend);
        configureEngine?.Invoke(engine);
        var server = RolloutServer.Create(engine, options, WeightsVersion, logging => logging.SetMinimumLevel(LogLevel.Warning));
        await server.StartAsync();
        // No draining of unread responses: disposing one closes the connection, as a client that goes away does.
        var handler = new SocketsHttpHandler { MaxResponseDrainSize = 0, ResponseDrainTimeout = TimeSpan.Zero };
        var client = new HttpClient(handler) { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromMinutes(2) };
        return new TestServer(server, client);
    }

    public async Task<(int Status, JsonElement Body)> PostAsync(string path, string json, string? apiKey = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        if (apiKey is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        }
        using var response = await Client.SendAsync(request);
        return ((int)response.StatusCode, await ReadJsonAsync(response));
    }

    public async Task<(int Status, JsonElement Body)> GetAsync(string path)
    {
        using var response = await Client.GetAsync(path);
        return ((int)response.StatusCode, await ReadJsonAsync(response));
    }

    /// <summary>Every sample of <c>/metrics</c>, keyed by name with labels as written (<c>name{a="b"}</c>).</summary>
    public async Task<Dictionary<string, double>> MetricsAsync() => PrometheusText.Parse(await Client.GetStringAsync("/metrics"));

    public static async Task<JsonElement> ReadJsonAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        if (response.Content.Headers.ContentType?.MediaType != "application/json")
        {
            return default;
        }
        using var document = JsonDocument.Parse(text);
        return document.RootElement.Clone();
    }

    /// <summary>The JSON payloads of an SSE stream up to <c>[DONE]</c>.</summary>
    public async Task<List<JsonElement>> StreamAsync(string path, string json)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        using var response = await Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var events = new List<JsonElement>();
        string? line;
        var done = false;
        while ((line = await reader.ReadLineAsync()) is not null)
        {
            if (line.Length == 0)
            {
                continue;
            }
            Assert.StartsWith("data: ", line);
            if (line == "data: [DONE]")
            {
                done = true;
                break;
            }
            using var document = JsonDocument.Parse(line[6..]);
            events.Add(document.RootElement.Clone());
        }
        Assert.True(done, "the stream ended without data: [DONE]");
        return events;
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
    }
}
