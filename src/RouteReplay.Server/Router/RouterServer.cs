using System.Net;
using Microsoft.AspNetCore.Builder;
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
    /// <summary>The routes and the methods each takes; another method on one of them is answered 405 with <c>Allow</c>.</summary>
    private static readonly Dictionary<string, string[]> Routes = new(StringComparer.Ordinal)
    {
        ["/v1/completions"] = ["POST"],
        ["/v1/chat/completions"] = ["POST"],
        ["/generate"] = ["POST"],
        ["/v1/models"] = ["GET"],
        ["/get_model_info"] = ["GET"],
        ["/update_weights_from_disk"] = ["POST"],
        ["/flush_cache"] = ["GET", "POST"],
        ["/abort_request"] = ["POST"],
        ["/health"] = ["GET", "HEAD"],
        ["/metrics"] = ["GET"],
    };

    /// <summary>How long an upstream connection stays pooled unused (the servers' keep-alive is 30 s by default).</summary>
    private static readonly TimeSpan UpstreamIdleTimeout = TimeSpan.FromSeconds(20);

    private readonly WebApplication _app;
    private readonly HttpClient _http;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private Task? _probes;
    private bool _stopped;

    private RouterServer(WebApplication app, HttpClient http, RouterOptions options, Upstream[] prefill, Upstream[] decode, ILogger logger, RouterMetrics metrics)
    {
        _app = app;
        Metrics = metrics;
        _http = http;
        _logger = logger;
        Options = options;
        Prefill = prefill;
        Decode = decode;
        Probes = new RouterProbes(options, [.. prefill, .. decode], http, logger);
    }

    public RouterOptions Options { get; }

    internal Upstream[] Prefill { get; }

    internal Upstream[] Decode { get; }

    internal RouterMetrics Metrics { get; }

    internal RouterProbes Probes { get; }

    internal RelayRegistry Relays { get; } = new();

    /// <summary>The address the router listens on (the real port when 0 was asked).</summary>
    public Uri BaseAddress => new(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

    /// <summary>
    /// Waits (up to <see cref="RouterOptions.StartupTimeout"/>) for every server to answer, checks each one's role,
    /// model, weights version and cluster key, learns the prefill servers' transfer ports, and builds the router.
    /// </summary>
    /// <exception cref="RouterStartException">A server is unreachable, refuses the key, or has another role, model, weights version or cluster key.</exception>
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
        WebApplication? app = null;
        try
        {
            app = Build(options, connections, configureLogging);
            var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("RouteReplay.Router");
            var prefill = options.PrefillServers.Select((u, i) => new Upstream(ServerRole.Prefill, u, i + 1, logger)).ToArray();
            var decode = options.DecodeServers.Select((u, i) => new Upstream(ServerRole.Decode, u, i + 1, logger)).ToArray();
            Upstream[] all = [.. prefill, .. decode];
            FleetCheck.Apply(options, all, await new RouterDiscovery(http, options).RunAsync(all, cancellationToken).ConfigureAwait(false));
            var metrics = new RouterMetrics(connections, app.Services.GetRequiredService<RefusedConnections>());
            var router = new RouterServer(app, http, options, prefill, decode, logger, metrics);
            router.Map();
            return router;
        }
        catch
        {
            if (app is not null)
            {
                await app.DisposeAsync().ConfigureAwait(false);
            }
            http.Dispose();
            throw;
        }
    }

    private static WebApplication Build(RouterOptions options, ConnectionLimits connections, Action<ILoggingBuilder>? configureLogging) =>
        ServerApps.Build("routereplay-router", options.Host, options.Port, options.MaxRequestBodyBytes, options.ShutdownGracePeriod + RolloutServer.AbortedRequestsDrainTime, connections, configureLogging);

    private void Map()
    {
        var apiKey = Options.ApiKey is { } key ? new ApiKeyCheck(key) : null;
        var proxy = new RouterProxy(this, _http, new PromptSourceRelay(Probes, _logger, _stopping.Token), _logger);
        var fanOut = new RouterFanOut(this, _http, _logger);
        new RouterShutdown(Options, Relays, _http, _logger).Register(_app.Lifetime);
        _app.Use(new RequestGuard(apiKey, _logger, Counted).InvokeAsync);
        var handlers = new Dictionary<string, RequestDelegate>
        {
            ["/v1/completions"] = proxy.GenerateAsync,
            ["/v1/chat/completions"] = proxy.GenerateAsync,
            ["/generate"] = proxy.GenerateAsync,
            ["/v1/models"] = proxy.ForwardAsync,
            ["/get_model_info"] = proxy.ForwardAsync,
            ["/update_weights_from_disk"] = fanOut.HandleAsync,
            ["/flush_cache"] = fanOut.HandleAsync,
            ["/abort_request"] = fanOut.HandleAsync,
            ["/health"] = HealthAsync,
            ["/metrics"] = context => Metrics.WriteAsync(context, Prefill, Decode),
        };
        foreach (var (path, methods) in Routes)
        {
            _app.MapMethods(path, methods, handlers[path]);
        }
        _app.MapFallback((RequestDelegate)(context =>
        {
            if (Routes.TryGetValue(context.Request.Path.Value ?? "", out var allowed))
            {
                context.Response.Headers.Allow = string.Join(", ", allowed);
                throw new ApiException(405, $"{context.Request.Method} is not allowed on {context.Request.Path}", null, "method_not_allowed");
            }
            throw new ApiException(404, $"no route {context.Request.Method} {context.Request.Path}", null, "not_found");
        }));
    }

    /// <summary>Counts an answer in <c>/metrics</c>, and logs every 5xx with the server it came from and why.</summary>
    private void Counted(HttpContext context)
    {
        var status = RelayNotes.CountedStatus(context);
        Metrics.CountResponse(context.Request.Path.Value ?? "", status);
        if (status >= 500)
        {
            _logger.LogWarning("{Method} {Path} answered {Status}: {Reason}", context.Request.Method, context.Request.Path, status, RelayNotes.Of(context).Error ?? "see the line before");
        }
    }

    /// <summary>200 while some decode server answers its health check (a prefill server's loss is absorbed by retries and fallbacks).</summary>
    private async Task HealthAsync(HttpContext context)
    {
        var probes = await Task.WhenAll(Decode.Select(server => Probes.ProbeAsync(server, context.RequestAborted))).ConfigureAwait(false);
        if (!probes.Any(up => up))
        {
            throw new ApiException(503, $"no decode server answers its health check ({string.Join(", ", Decode.Select(d => d.Label))})", null, "no_decode_server");
        }
        context.Response.ContentType = "text/plain";
        await context.Response.WriteAsync("OK\n", context.RequestAborted).ConfigureAwait(false);
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
        _probes = Task.Run(() => Probes.RunAsync(_stopping.Token));
    }

    /// <summary>Routes until SIGTERM or Ctrl-C, then lets requests in flight finish within the grace period and aborts the rest.</summary>
    public async Task RunAsync(CancellationToken cancellationToken = default)
    {
        await StartAsync(cancellationToken).ConfigureAwait(false);
        foreach (var server in Prefill)
        {
            _logger.LogInformation("Prefill server {Url} (transfers on {Transfer})", server.Name, server.Transfer);
        }
        foreach (var server in Decode)
        {
            _logger.LogInformation("Decode server {Url}", server.Name);
        }
        if (Options.ClusterKey is null)
        {
            _logger.LogInformation("No --cluster-key: decode servers use the prefill servers named here only if their --prefill-peers list them");
        }
        _logger.LogInformation("Routing on {Address} (OpenAI API under /v1, SGLang /generate); Ctrl-C or SIGTERM to stop", BaseAddress);
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
}

/// <summary>The router cannot start: a server it was given is unreachable or not what it was said to be.</summary>
public sealed class RouterStartException(string message) : IOException(message);
