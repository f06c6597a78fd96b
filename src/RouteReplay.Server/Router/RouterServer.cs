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
/// The single entry point of a fleet: the same HTTP API as <c>serve</c> (OpenAI, SGLang <c>/generate</c>, control
/// endpoints, health, metrics) in front of prefill and decode servers, or of workers (plain <c>serve</c> processes,
/// data-parallel). With prefill and decode servers, each generation request goes to the decode server with the fewest
/// requests in flight, with a header naming the prefill servers to compute its prompt on (the least loaded first, the
/// others for retries). With workers, each goes to the worker <see cref="WorkerChooser"/> picks (by default the one
/// whose recent prompts share the most leading blocks with it), and workers may join and leave while the router runs.
/// The server's answer, streamed or whole, is relayed unchanged, so every response (routing included) is the server's
/// own. Control endpoints (weight updates, cache flushes, aborts) are sent to every server. The router holds no model.
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
        ["/release_memory_occupation"] = ["GET", "POST"],
        ["/resume_memory_occupation"] = ["GET", "POST"],
        ["/sleep"] = ["POST"],
        ["/wake_up"] = ["POST"],
        ["/is_sleeping"] = ["GET"],
        ["/health"] = ["GET", "HEAD"],
        ["/metrics"] = ["GET"],
    };

    /// <summary>The routes only a router over workers has.</summary>
    private static readonly Dictionary<string, string[]> WorkerRoutes = new(StringComparer.Ordinal)
    {
        ["/add_worker"] = ["POST"],
        ["/remove_worker"] = ["POST"],
        ["/list_workers"] = ["GET"],
    };

    /// <summary>How long an upstream connection stays pooled unused (the servers' keep-alive is 30 s by default).</summary>
    private static readonly TimeSpan UpstreamIdleTimeout = TimeSpan.FromSeconds(20);

    private readonly WebApplication _app;
    private readonly HttpClient _http;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private Task? _probes;
    private bool _stopped;

    private RouterServer(WebApplication app, HttpClient http, RouterOptions options, Upstream[] prefill, Upstream[] decode, WorkerPool? workers, ILogger logger, RouterMetrics metrics)
    {
        _app = app;
        Metrics = metrics;
        _http = http;
        _logger = logger;
        Options = options;
        Prefill = prefill;
        Decode = decode;
        Workers = workers;
        Probes = workers is null
            ? new RouterProbes(options, () => Servers, "prefill servers refuse transfers to decode servers of other weights, so those prompts are computed on the decode servers until every server has the same weights (update them through the router's /update_weights_from_disk)", http, logger)
            : new RouterProbes(options, () => Servers, "workers of other weights answer one request with other tokens and routing (update them through the router's /update_weights_from_disk)", http, logger);
    }

    public RouterOptions Options { get; }

    internal Upstream[] Prefill { get; }

    internal Upstream[] Decode { get; }

    /// <summary>The workers, when the router routes to workers (else null).</summary>
    internal WorkerPool? Workers { get; }

    /// <summary>Every server now: the prefill then the decode servers, or the workers.</summary>
    internal Upstream[] Servers => Workers?.Servers ?? [.. Prefill, .. Decode];

    internal RouterMetrics Metrics { get; }

    internal RouterProbes Probes { get; }

    internal RelayRegistry Relays { get; } = new();

    /// <summary>The address the router listens on (the real port when 0 was asked).</summary>
    public Uri BaseAddress => new(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

    /// <summary>
    /// Waits (up to <see cref="RouterOptions.StartupTimeout"/>) for every server to answer, checks each one's role,
    /// model, weights version and cluster key, learns the prefill servers' transfer ports, and builds the router.
    /// </summary>
    /// <exception cref="ArgumentException">An option is invalid (<see cref="RouterOptions.Validate"/>).</exception>
    /// <exception cref="RouterStartException">A server is unreachable, refuses the key, or has another role, model, weights version or cluster key.</exception>
    public static async Task<RouterServer> CreateAsync(RouterOptions options, Action<ILoggingBuilder>? configureLogging = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        var servers = options.PrefillServers.Count + options.DecodeServers.Count + options.Workers.Count;
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
            var workers = options.Workers.Count > 0 ? new WorkerPool(options, logger) : null;
            Upstream[] all = workers is null ? [.. prefill, .. decode] : [.. options.Workers.Select(workers.NewServer)];
            var infos = await new RouterDiscovery(http, options).RunAsync(all, cancellationToken).ConfigureAwait(false);
            FleetCheck.Apply(options, all, infos);
            if (workers is not null)
            {
                workers.Model = infos[0].Model;
                foreach (var worker in all)
                {
                    workers.TryAdd(worker);
                }
            }
            var metrics = new RouterMetrics(connections, app.Services.GetRequiredService<RefusedConnections>());
            var router = new RouterServer(app, http, options, prefill, decode, workers, logger, metrics);
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
        var fanOut = new RouterFanOut(this, _http, _logger);
        new RouterShutdown(Options, Relays, _http, _logger).Register(_app.Lifetime);
        _app.Use(new RequestGuard(apiKey, _logger, Counted).InvokeAsync);
        var handlers = Workers is null ? PrefillDecodeHandlers() : WorkerHandlers(Workers);
        handlers["/update_weights_from_disk"] = fanOut.HandleAsync;
        handlers["/flush_cache"] = fanOut.HandleAsync;
        handlers["/abort_request"] = fanOut.HandleAsync;
        foreach (var path in RouterFanOut.MemoryPaths)
        {
            handlers[path] = fanOut.HandleAsync;
        }
        var routes = Workers is null ? Routes : Routes.Concat(WorkerRoutes).ToDictionary(StringComparer.Ordinal);
        foreach (var (path, methods) in routes)
        {
            _app.MapMethods(path, methods, handlers[path]);
        }
        _app.MapFallback((RequestDelegate)(context =>
        {
            if (routes.TryGetValue(context.Request.Path.Value ?? "", out var allowed))
            {
                context.Response.Headers.Allow = string.Join(", ", allowed);
                throw new ApiException(405, $"{context.Request.Method} is not allowed on {context.Request.Path}", null, "method_not_allowed");
            }
            throw new ApiException(404, $"no route {context.Request.Method} {context.Request.Path}", null, "not_found");
        }));
    }

    private Dictionary<string, RequestDelegate> PrefillDecodeHandlers()
    {
        var proxy = new RouterProxy(this, _http, new PromptSourceRelay(Probes, _logger, _stopping.Token), _logger);
        return new()
        {
            ["/v1/completions"] = proxy.GenerateAsync,
            ["/v1/chat/completions"] = proxy.GenerateAsync,
            ["/generate"] = proxy.GenerateAsync,
            ["/v1/models"] = proxy.ForwardAsync,
            ["/get_model_info"] = proxy.ForwardAsync,
            ["/health"] = context => HealthAsync(context, Decode, "decode server"),
            ["/metrics"] = context => Metrics.WriteAsync(context, Servers, null),
        };
    }

    private Dictionary<string, RequestDelegate> WorkerHandlers(WorkerPool workers)
    {
        var proxy = new WorkerProxy(this, workers, new WorkerChooser(Options), _http, _logger);
        var control = new WorkerControl(Options, workers, _http, _logger);
        var metrics = new WorkerMetrics(Options, workers, _http);
        return new()
        {
            ["/v1/completions"] = proxy.GenerateAsync,
            ["/v1/chat/completions"] = proxy.GenerateAsync,
            ["/generate"] = proxy.GenerateAsync,
            ["/v1/models"] = proxy.ForwardAsync,
            ["/get_model_info"] = proxy.ForwardAsync,
            ["/health"] = context => HealthAsync(context, workers.Servers, "worker"),
            ["/metrics"] = context => Metrics.WriteAsync(context, Servers, metrics),
            ["/add_worker"] = control.AddAsync,
            ["/remove_worker"] = control.RemoveAsync,
            ["/list_workers"] = control.ListAsync,
        };
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

    /// <summary>
    /// 200 while some decode server (worker) answers its health check (a prefill server's loss is absorbed by retries and
    /// fallbacks).
    /// </summary>
    private async Task HealthAsync(HttpContext context, Upstream[] servers, string kind)
    {
        var probes = await Task.WhenAll(servers.Select(server => Probes.ProbeAsync(server, context.RequestAborted))).ConfigureAwait(false);
        if (!probes.Any(up => up))
        {
            throw new ApiException(503, $"no {kind} answers its health check ({string.Join(", ", servers.Select(d => d.Label))})", null, $"no_{kind.Replace(' ', '_')}");
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
        foreach (var worker in Workers?.Snapshot ?? [])
        {
            _logger.LogInformation("Worker {Url}", worker.Server.Name);
        }
        if (Workers is not null)
        {
            _logger.LogInformation("Choosing workers by policy {Policy}", PolicyNames.Name(Options.Policy));
        }
        else if (Options.ClusterKey is null)
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
