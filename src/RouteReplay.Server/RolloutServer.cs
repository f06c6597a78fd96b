using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RouteReplay.Disaggregation;
using RouteReplay.Engine;
using RouteReplay.Server.Control;
using RouteReplay.Server.Http;
using RouteReplay.Server.Metrics;
using RouteReplay.Server.OpenAi;
using RouteReplay.Server.Sglang;

namespace RouteReplay.Server;

/// <summary>
/// The HTTP server: Kestrel with the OpenAI-compatible API, SGLang's <c>/generate</c> and control endpoints, health and
/// metrics, all over one <see cref="AsyncEngine"/>; with <see cref="ServerRole.Prefill"/> also the transfer listener
/// decode servers fetch prompt blocks from. Owns the engine: disposing the server stops it.
/// </summary>
public sealed class RolloutServer : IAsyncDisposable
{
    /// <summary>
    /// How long requests aborted at the end of the shutdown grace period have to write their final chunks before the
    /// server closes their connections.
    /// </summary>
    public static readonly TimeSpan AbortedRequestsDrainTime = TimeSpan.FromSeconds(10);

    private readonly WebApplication _app;
    private readonly TransferServer? _transfers;
    private bool _stopped;

    private RolloutServer(WebApplication app, EngineHost host, TransferServer? transfers)
    {
        _app = app;
        Host = host;
        _transfers = transfers;
    }

    public EngineHost Host { get; }

    /// <summary>The address the server listens on, e.g. <c>http://127.0.0.1:8000</c> (the real port when 0 was asked).</summary>
    public Uri BaseAddress
    {
        get
        {
            var addresses = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
            return new Uri(addresses.First());
        }
    }

    /// <param name="engine">The engine to serve; the server runs its step loop and disposes it.</param>
    /// <param name="options">Listening and admission settings.</param>
    /// <param name="weightVersion">The weights version to report until an update.</param>
    /// <param name="configureLogging">Replaces the default console logging (tests quiet it).</param>
    public static RolloutServer Create(LlmEngine engine, ServerOptions options, string weightVersion, Action<ILoggingBuilder>? configureLogging = null)
    {
        options.Validate();
        var connections = ConnectionLimits.ForThisProcess(otherSockets: options.Disaggregation.Role != ServerRole.Both, options.KeepAlive);
        var app = ServerApps.Build("routereplay", options.Host, options.Port, options.MaxRequestBodyBytes, options.ShutdownGracePeriod + AbortedRequestsDrainTime, connections, configureLogging);
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("RouteReplay.Server");
        var host = new EngineHost(new AsyncEngine(engine), options, weightVersion, logger);
        Map(app, host, logger, new PrometheusEndpoint(host, connections, app.Services.GetRequiredService<RefusedConnections>()));
        app.Lifetime.ApplicationStopping.Register(() => _ = host.AbortAfterGraceAsync(options.ShutdownGracePeriod, app.Lifetime.ApplicationStopped));
        var transfers = options.Disaggregation.Role == ServerRole.Prefill
            ? new TransferServer(host, ListenAddress(options), options.Disaggregation, host.Transfers, message => logger.LogWarning("{Message}", message))
            {
                MaxConnections = connections.MaxOtherSockets,
            }
            : null;
        if (transfers is not null)
        {
            app.Lifetime.ApplicationStopping.Register(transfers.StopAccepting);
        }
        return new RolloutServer(app, host, transfers);
    }

    /// <summary>
    /// Fails early, before a model is loaded, when <c>--host</c>/<c>--port</c> (and a prefill server's
    /// <c>--transfer-port</c>) cannot be listened on (the port is taken, or the address is not this machine's). Port 0
    /// always can. The real bind at start is checked the same way.
    /// </summary>
    /// <exception cref="ServerListenException">The address cannot be listened on.</exception>
    public static void CheckCanListen(ServerOptions options)
    {
        options.Validate();
        if (options.Port != 0)
        {
            CheckCanListen(options, options.Port, e => ServerListenException.For(options, e));
        }
        if (options.Disaggregation.Role == ServerRole.Prefill && options.Disaggregation.TransferPort != 0)
        {
            CheckCanListen(options, options.Disaggregation.TransferPort, e => ServerListenException.ForTransfers(options, e));
        }
    }

    private static void CheckCanListen(ServerOptions options, int port, Func<Exception, ServerListenException> error)
    {
        var listener = new System.Net.Sockets.TcpListener(ListenAddress(options), port);
        try
        {
            listener.Start();
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw error(e);
        }
        finally
        {
            listener.Stop();
            listener.Dispose();
        }
    }

    private static IPAddress ListenAddress(ServerOptions options) => options.Host == "localhost" ? IPAddress.Loopback : IPAddress.Parse(options.Host);

    private static void Map(WebApplication app, EngineHost host, ILogger logger, PrometheusEndpoint metrics)
    {
        var apiKey = host.Options.ApiKey is { } key ? new ApiKeyCheck(key) : null;
        app.Use(new RequestGuard(apiKey, logger, context => host.Metrics.CountResponse(context.Response.StatusCode)).InvokeAsync);
        var openAi = new OpenAiEndpoints(host, logger);
        var generate = new GenerateEndpoint(host, logger);
        var control = new ControlEndpoints(host);
        var memory = new MemoryEndpoints(host);
        app.MapGet("/v1/models", (RequestDelegate)openAi.ModelsAsync);
        app.MapPost("/v1/completions", (RequestDelegate)openAi.CompletionsAsync);
        app.MapPost("/v1/chat/completions", (RequestDelegate)openAi.ChatCompletionsAsync);
        app.MapPost("/generate", (RequestDelegate)generate.HandleAsync);
        app.MapPost("/update_weights_from_disk", (RequestDelegate)control.UpdateWeightsFromDiskAsync);
        app.MapPost("/update_weights_from_ipc", (RequestDelegate)control.UpdateWeightsFromIpcAsync);
        app.MapMethods("/flush_cache", ["GET", "POST"], (RequestDelegate)control.FlushCacheAsync);
        app.MapPost("/abort_request", (RequestDelegate)control.AbortRequestAsync);
        app.MapGet("/get_model_info", (RequestDelegate)control.GetModelInfoAsync);
        app.MapMethods("/release_memory_occupation", ["GET", "POST"], (RequestDelegate)memory.ReleaseMemoryOccupationAsync);
        app.MapMethods("/resume_memory_occupation", ["GET", "POST"], (RequestDelegate)memory.ResumeMemoryOccupationAsync);
        app.MapPost("/sleep", (RequestDelegate)memory.SleepAsync);
        app.MapPost("/wake_up", (RequestDelegate)memory.WakeUpAsync);
        app.MapGet("/is_sleeping", (RequestDelegate)memory.IsSleepingAsync);
        app.MapMethods("/health", ["GET", "HEAD"], (RequestDelegate)control.HealthAsync);
        app.MapGet("/metrics", (RequestDelegate)metrics.HandleAsync);
        HashSet<string> routes = ["/v1/models", "/v1/completions", "/v1/chat/completions", "/generate", "/update_weights_from_disk", "/update_weights_from_ipc", "/flush_cache", "/abort_request", "/get_model_info", "/health", "/metrics",
            "/release_memory_occupation", "/resume_memory_occupation", "/sleep", "/wake_up", "/is_sleeping"];
        app.MapFallback((RequestDelegate)(context => throw (routes.Contains(context.Request.Path.Value?.TrimEnd('/') ?? "")
            ? new ApiException(405, $"{context.Request.Method} is not allowed on {context.Request.Path}", null, "method_not_allowed")
            : new ApiException(404, $"no route {context.Request.Method} {context.Request.Path}", null, "not_found"))));
    }

    /// <summary>Starts listening; returns once the server accepts connections.</summary>
    /// <exception cref="ServerListenException">The address cannot be listened on.</exception>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_transfers is not null)
        {
            try
            {
                _transfers.Start();
            }
            catch (System.Net.Sockets.SocketException e)
            {
                throw ServerListenException.ForTransfers(Host.Options, e);
            }
            Host.TransferPort = _transfers.Port;
        }
        try
        {
            await _app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (IOException e)
        {
            throw ServerListenException.For(Host.Options, e);
        }
    }

    /// <summary>
    /// Serves until SIGTERM or Ctrl-C, then stops accepting, lets in-flight requests finish within the grace period,
    /// aborts the rest and stops the engine. When the engine itself stops (a device fault, or block accounting that can
    /// no longer be trusted), every request has already failed: it logs one line and stops.
    /// </summary>
    /// <exception cref="ServerListenException">The address cannot be listened on.</exception>
    /// <exception cref="EngineStoppedException">The engine stopped; the process should exit non-zero.</exception>
    public async Task RunAsync(CancellationToken cancellationToken = default)
    {
        await StartAsync(cancellationToken).ConfigureAwait(false);
        var logger = _app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("RouteReplay.Server");
        if (Host.TransferPort is { } port)
        {
            logger.LogInformation("Prefill role: transfers on tcp://{Host}:{Port}{Trust}", Host.Options.Host, port, Host.Options.Disaggregation.ClusterKey is null ? ", served to any peer (no --cluster-key)" : ", served to peers with the cluster key");
        }
        else if (Host.Role == ServerRole.Decode)
        {
            logger.LogInformation("Decode role: prompts are prefilled on the servers a router names (fallback {Fallback})", Host.Options.Disaggregation.Fallback.ToString().ToLowerInvariant());
            if (Host.PrefillTrust.Mode == "none")
            {
                logger.LogWarning("Decode role without --cluster-key or --prefill-peers: this server trusts no prefill server, so it computes every prompt itself");
            }
        }
        logger.LogInformation(
            "Serving '{Model}' on {Address} (OpenAI API under /v1, SGLang /generate); Ctrl-C or SIGTERM to stop",
            Host.ModelName,
            BaseAddress);
        var shutdown = _app.WaitForShutdownAsync(cancellationToken);
        if (await Task.WhenAny(shutdown, Host.Engine.Failed).ConfigureAwait(false) == Host.Engine.Failed)
        {
            var fault = await Host.Engine.Failed.ConfigureAwait(false);
            logger.LogCritical(
                "The engine stopped and cannot serve again: {Message}. Every request in flight has failed; the server exits (code 1) so that a supervisor can restart it",
                fault.Message);
            _app.Lifetime.StopApplication();
            await shutdown.ConfigureAwait(false);
            _stopped = true;
            await StopAsync().ConfigureAwait(false);
            throw new EngineStoppedException(fault);
        }
        await shutdown.ConfigureAwait(false);
        _stopped = true;
        await StopAsync().ConfigureAwait(false);
    }

    /// <summary>Ends the transfers (releasing what they hold) while the engine still runs, then stops the engine.</summary>
    private async Task StopAsync()
    {
        if (_transfers is not null)
        {
            await _transfers.DisposeAsync().ConfigureAwait(false);
        }
        await Host.DisposeAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stopped)
        {
            _stopped = true;
            await _app.StopAsync().ConfigureAwait(false);
            await StopAsync().ConfigureAwait(false);
        }
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
