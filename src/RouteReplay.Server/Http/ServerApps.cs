using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace RouteReplay.Server.Http;

/// <summary>
/// The Kestrel application every server of the project starts from: one-line console logs, no server header, a body
/// limit, one listen address, and connections bounded below the open-files limit (<see cref="ConnectionLimits"/>; the
/// refused ones are counted by the <see cref="RefusedConnections"/> service).
/// </summary>
internal static class ServerApps
{
    /// <param name="name">The application name.</param>
    /// <param name="host">An IP address or <c>localhost</c>.</param>
    /// <param name="port">TCP port; 0 for any free one.</param>
    /// <param name="maxRequestBodyBytes">Larger bodies get 413.</param>
    /// <param name="shutdownTimeout">How long the host waits for requests in flight when it stops.</param>
    /// <param name="connections">How many connections to admit at once, and how long idle ones stay open.</param>
    /// <param name="configureLogging">Replaces the default console logging (tests quiet it).</param>
    public static WebApplication Build(string name, string host, int port, long maxRequestBodyBytes, TimeSpan shutdownTimeout, ConnectionLimits connections, Action<ILoggingBuilder>? configureLogging)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ApplicationName = name });
        builder.Logging.ClearProviders();
        if (configureLogging is null)
        {
            builder.Logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss ";
            });
            builder.Logging.SetMinimumLevel(LogLevel.Information);
            builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
            builder.Logging.AddFilter("Microsoft.Hosting", LogLevel.Warning);
            builder.Logging.AddFilter("System.Net.Http", LogLevel.Warning);
            // Kestrel warns once per refused connection; RefusedConnections logs them at a bounded rate instead.
            builder.Logging.AddFilter("Microsoft.AspNetCore.Server.Kestrel.Connections", LogLevel.Error);
        }
        else
        {
            configureLogging(builder.Logging);
        }
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = shutdownTimeout);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = maxRequestBodyBytes;
            kestrel.Limits.MaxConcurrentConnections = connections.MaxConnections;
            // No route upgrades a connection (an upgraded one stops counting against MaxConcurrentConnections).
            kestrel.Limits.MaxConcurrentUpgradedConnections = connections.MaxConnections is null ? null : 0;
            kestrel.Limits.KeepAliveTimeout = connections.KeepAlive;
            kestrel.Limits.RequestHeadersTimeout = ConnectionLimits.RequestHeadersTimeout;
            if (host == "localhost")
            {
                kestrel.ListenLocalhost(port);
            }
            else
            {
                kestrel.Listen(IPAddress.Parse(host), port);
            }
        });
        builder.Services.AddSingleton(services => new RefusedConnections(
            services.GetRequiredService<IMeterFactory>(),
            services.GetRequiredService<ILoggerFactory>().CreateLogger("RouteReplay.Connections"),
            connections));
        var app = builder.Build();
        _ = app.Services.GetRequiredService<RefusedConnections>();
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("RouteReplay.Connections");
        logger.LogInformation("{Limits}", connections.Describe());
        if (connections.BelowFewest)
        {
            logger.LogWarning("The open-files limit of {Limit} leaves room for fewer than {Fewest} connections; raise it (ulimit -n)", connections.OpenFilesLimit, ConnectionLimits.Fewest);
        }
        return app;
    }
}
