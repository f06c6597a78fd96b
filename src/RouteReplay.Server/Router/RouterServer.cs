using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RouteReplay.Disaggregation;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.Router;

/// <summary>
/// The single entry point of a prefill/decode fleet: the same HTTP API as <c>serve</c> (OpenAI, SGLang
/// <c>/generate</c>, control endpoints, health, metrics) in front of prefill and decode servers. Each generation
/// request goes to the decode server with the fewest requests in flight, with a header naming the prefill servers to
/// compute its prompt on (the least loaded first, the others for retries); the decode server's answer, streamed or
/// whole, is relayed unchanged, so every response (routing included) is the decode server's own. Control endpoints
/// (weight updates, cache flushes, aborts) are sent to every server. The router holds no model.
/// </summary>
public sealed class RouterServer : IAsyncDisposable
{
    /// <summary>How long an upstream connection stays pooled unused (the servers' keep-alive is 30 s by default).</summary>
    private static readonly TimeSpan UpstreamIdleTimeout = TimeSpan.FromSeconds(20);

    private readonly WebApplication _app;
    private readonly HttpClient _http;
    private readonly CancellationTokenSource _stopping = new();
    private Task? _probes;
    private bool _stopped;

    private RouterServer(WebApplication app, HttpClient http, RouterOptions options, Upstream[] prefill, Upstream[] decode, RouterMetrics metrics)
    {
        _app = app;
        _http = http;
        Options = options;
        Prefill = prefill;
        Decode = decode;
        Metrics = metrics;
    }

    public RouterOptions Options { get; }

    internal Upstream[] Prefill { get; }

    internal Upstream[] Decode { get; }

    internal RouterMetrics Metrics { get; }

    /// <summary>The address the router listens on (the real port when 0 was asked).</summary>
    public Uri BaseAddress => new(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

    /// <summary>
    /// Waits (up to <see cref="RouterOptions.StartupTimeout"/>) for every server to answer, checks each one's role, learns
    /// the prefill servers' transfer ports, and builds the router.
    /// </summary>
    /// <exception cref="RouterStartException">A server is unreachable, refuses the key, or has another role or model.</exception>
    public static async Task<RouterServer> CreateAsync(RouterOptions options, Action<ILoggingBuilder>? configureLogging = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        var servers = options.PrefillServers.Count + options.DecodeServers.Count;
        var connections = ConnectionLimits.ForThisProcess(otherSockets: true, options.KeepAlive);
        var http = new HttpClient(new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromSeconds(5),
            // Below the servers' default keep-alive, so a pooled connection is never one a server is closing.
            PooledConnectionIdleTimeout = UpstreamIdleTimeout,
            MaxConnectionsPerServer = connections.MaxOtherSockets is { } sockets ? (int)Math.Clamp(sockets / servers, 1, int.MaxValue) : int.MaxValue,
            AutomaticDecompression = DecompressionMethods.None,
        })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
        try
        {
            var prefill = options.PrefillServers.Select(u => new Upstream(ServerRole.Prefill, u)).ToArray();
            var decode = options.DecodeServers.Select(u => new Upstream(ServerRole.Decode, u)).ToArray();
            await new Discovery(http, options).RunAsync([.. prefill, .. decode], cancellationToken).ConfigureAwait(false);
            var app = Build(options, connections, configureLogging);
            var metrics = new RouterMetrics(connections, app.Services.GetRequiredService<RefusedConnections>());
            var router = new RouterServer(app, http, options, prefill, decode, metrics);
            router.Map();
            return router;
        }
        catch
        {
            http.Dispose();
            throw;
        }
    }

    private static WebApplication Build(RouterOptions options, ConnectionLimits connections, Action<ILoggingBuilder>? configureLogging) =>
        ServerApps.Build("routereplay-router", options.Host, options.Port, options.MaxRequestBodyBytes, options.ShutdownGracePeriod, connections, configureLogging);

    private void Map()
    {
        var logger = _app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("RouteReplay.Router");
        var apiKey = Options.ApiKey is { } key ? new ApiKeyCheck(key) : null;
        var proxy = new RouterProxy(this, _http, logger);
        var fanOut = new RouterFanOut(this, _http);
        _app.Use(new RequestGuard(apiKey, logger, context => Metrics.CountResponse(context.Request.Path.Value ?? "", context.Response.StatusCode)).InvokeAsync);
        _app.MapPost("/v1/completions", (RequestDelegate)proxy.GenerateAsync);
        _app.MapPost("/v1/chat/completions", (RequestDelegate)proxy.GenerateAsync);
        _app.MapPost("/generate", (RequestDelegate)proxy.GenerateAsync);
        _app.MapGet("/v1/models", (RequestDelegate)proxy.ForwardAsync);
        _app.MapGet("/get_model_info", (RequestDelegate)proxy.ForwardAsync);
        _app.MapPost("/update_weights_from_disk", (RequestDelegate)fanOut.HandleAsync);
        _app.MapMethods("/flush_cache", ["GET", "POST"], (RequestDelegate)fanOut.HandleAsync);
        _app.MapPost("/abort_request", (RequestDelegate)fanOut.HandleAsync);
        _app.MapGet("/health", (RequestDelegate)HealthAsync);
        _app.MapGet("/metrics", (RequestDelegate)(context => Metrics.WriteAsync(context, Prefill, Decode)));
        _app.MapFallback((RequestDelegate)(_ => throw new ApiException(404, "no such route on the router", null, "not_found")));
    }

    /// <summary>200 while some decode server answers its health check (a prefill server's loss is absorbed by retries and fallbacks).</summary>
    private async Task HealthAsync(HttpContext context)
    {
        var probes = await Task.WhenAll(Decode.Select(server => ProbeAsync(server, context.RequestAborted))).ConfigureAwait(false);
        if (!probes.Any(up => up))
        {
            throw new ApiException(503, $"no decode server answers its health check ({string.Join(", ", Decode.Select(d => d.Name))})", null, "no_decode_server");
        }
        context.Response.ContentType = "text/plain";
        await context.Response.WriteAsync("OK\n", context.RequestAborted).ConfigureAwait(false);
    }

    private async Task<bool> ProbeAsync(Upstream server, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(2));
        try
        {
            using var response = await _http.GetAsync(server.Url("/health"), timeout.Token).ConfigureAwait(false);
            server.IsUp = response.IsSuccessStatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
        {
            server.IsUp = false;
        }
        return server.IsUp;
    }

    private async Task ProbeLoopAsync()
    {
        using var timer = new PeriodicTimer(Options.HealthInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token).ConfigureAwait(false))
            {
                await Task.WhenAll(Prefill.Concat(Decode).Select(s => ProbeAsync(s, _stopping.Token))).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <exception cref="ServerListenException">The address cannot be listened on.</exception>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            await _app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            throw ServerListenException.For(new ServerOptions { ModelPath = ".", Host = Options.Host, Port = Options.Port }, e);
        }
        _probes = Task.Run(ProbeLoopAsync);
    }

    /// <summary>Routes until SIGTERM or Ctrl-C, then lets requests in flight finish within the grace period.</summary>
    public async Task RunAsync(CancellationToken cancellationToken = default)
    {
        await StartAsync(cancellationToken).ConfigureAwait(false);
        var logger = _app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("RouteReplay.Router");
        foreach (var server in Prefill)
        {
            logger.LogInformation("Prefill server {Url} (transfers on {Transfer})", server.Name, server.Transfer);
        }
        foreach (var server in Decode)
        {
            logger.LogInformation("Decode server {Url}", server.Name);
        }
        logger.LogInformation("Routing on {Address} (OpenAI API under /v1, SGLang /generate); Ctrl-C or SIGTERM to stop", BaseAddress);
        await _app.WaitForShutdownAsync(cancellationToken).ConfigureAwait(false);
        _stopped = true;
        await StopProbesAsync().ConfigureAwait(false);
    }

    private async Task StopProbesAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_probes is not null)
        {
            await _probes.ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stopped)
        {
            _stopped = true;
            await _app.StopAsync().ConfigureAwait(false);
            await StopProbesAsync().ConfigureAwait(false);
        }
        await _app.DisposeAsync().ConfigureAwait(false);
        _http.Dispose();
        _stopping.Dispose();
    }

    /// <summary>Asks every server for its model info until it answers, and checks roles and models.</summary>
    private sealed class Discovery(HttpClient http, RouterOptions options)
    {
        public async Task RunAsync(Upstream[] servers, CancellationToken cancellationToken)
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(options.StartupTimeout);
            var infos = await Task.WhenAll(servers.Select(s => InfoAsync(s, deadline.Token, cancellationToken))).ConfigureAwait(false);
            for (var i = 0; i < servers.Length; i++)
            {
                var (server, info) = (servers[i], infos[i]);
                var role = info.TryGetProperty("disaggregation_role", out var r) ? r.GetString() : null;
                if (role != server.RoleName)
                {
                    throw new RouterStartException($"--{server.RoleName} {server.Name} is a server with role '{role ?? "unknown (not a RouteReplay server of this version?)"}'; start it with 'routereplay serve --role {server.RoleName}'");
                }
                if (server.Role == ServerRole.Prefill)
                {
                    if (!info.TryGetProperty("transfer_port", out var port) || !port.TryGetInt32(out var number))
                    {
                        throw new RouterStartException($"--prefill {server.Name} announces no transfer_port");
                    }
                    server.Transfer = new TransferEndpoint(server.BaseUri.IdnHost, number);
                }
            }
            var models = infos.Select((info, i) => (Server: servers[i], Model: info.TryGetProperty("served_model_name", out var m) ? m.GetString() : null)).ToArray();
            if (models.Select(m => m.Model).Distinct().Count() > 1)
            {
                throw new RouterStartException($"the servers serve different models: {string.Join(", ", models.Select(m => $"{m.Server.Name} '{m.Model}'"))}");
            }
        }

        private async Task<JsonElement> InfoAsync(Upstream server, CancellationToken deadline, CancellationToken cancellationToken)
        {
            string? lastError = null;
            while (true)
            {
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Get, server.Url("/get_model_info"));
                    if (options.ApiKey is { } key)
                    {
                        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
                    }
                    using var response = await http.SendAsync(request, deadline).ConfigureAwait(false);
                    var text = await response.Content.ReadAsStringAsync(deadline).ConfigureAwait(false);
                    if (!response.IsSuccessStatusCode)
                    {
                        throw new RouterStartException($"--{server.RoleName} {server.Name} answered /get_model_info with {(int)response.StatusCode}: {Message(text)}");
                    }
                    using var document = JsonDocument.Parse(text);
                    return document.RootElement.Clone();
                }
                catch (HttpRequestException e)
                {
                    lastError = e.Message;
                }
                catch (JsonException e)
                {
                    throw new RouterStartException($"--{server.RoleName} {server.Name} is not a RouteReplay server (its /get_model_info is not JSON: {e.Message})");
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    break;
                }
                try
                {
                    await Task.Delay(250, deadline).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    break;
                }
            }
            throw new RouterStartException($"--{server.RoleName} {server.Name} did not answer within {options.StartupTimeout.TotalSeconds:0.#} s (--startup-timeout-seconds){(lastError is null ? "" : $": {lastError}")}");
        }

        private static string Message(string body)
        {
            try
            {
                using var document = JsonDocument.Parse(body);
                return document.RootElement.GetProperty("error").GetProperty("message").GetString() ?? body;
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                return body.Length > 200 ? body[..200] : body;
            }
        }
    }
}

/// <summary>The router cannot start: a server it was given is unreachable or not what it was said to be.</summary>
public sealed class RouterStartException(string message) : IOException(message);
