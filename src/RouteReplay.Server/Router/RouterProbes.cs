using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using RouteReplay.Disaggregation;

namespace RouteReplay.Server.Router;

/// <summary>
/// The router's view of its servers, kept fresh: every <see cref="RouterOptions.HealthInterval"/> (and at once for a
/// prefill server whose transfer failed) each server's <c>/health</c> and <c>/get_model_info</c> are read. A server is up
/// while both answer; a prefill server's transfer port is re-learned (a restarted server with
/// <c>--transfer-port 0</c> has a new one); a weights version that changes is logged, loudly when the servers' versions
/// then differ (transfers between them are refused), unless a weight update through the router is running.
/// </summary>
/// <param name="servers">The servers now (workers may join and leave).</param>
/// <param name="weightsDiffer">What servers of other weights versions cause, for the error line.</param>
internal sealed class RouterProbes(RouterOptions options, Func<IReadOnlyList<Upstream>> servers, string weightsDiffer, HttpClient http, ILogger logger)
{
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(2);

    private readonly ConcurrentDictionary<Upstream, Task> _soon = new();
    private readonly Lock _lock = new();
    private string? _warnedDifference;
    private int _updatingWeights;
    private int _weightUpdates;

    /// <summary>While a weight update through the router runs, the servers' versions may differ without a warning.</summary>
    public IDisposable UpdatingWeights()
    {
        Interlocked.Increment(ref _updatingWeights);
        Interlocked.Increment(ref _weightUpdates);
        return new Done(() =>
        {
            Interlocked.Increment(ref _weightUpdates);
            Interlocked.Decrement(ref _updatingWeights);
        });
    }

    /// <summary>Probes every server every interval until <paramref name="stopping"/>.</summary>
    public async Task RunAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(options.HealthInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(stopping).ConfigureAwait(false))
            {
                await Task.WhenAll(servers().Select(s => ProbeAsync(s, stopping))).ConfigureAwait(false);
                CheckWeights();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Probes <paramref name="server"/> now, unless a probe of it started by this method still runs.</summary>
    public void ProbeSoon(Upstream server, CancellationToken stopping)
    {
        var probe = new Task<Task>(async () =>
        {
            try
            {
                await ProbeAsync(server, stopping).ConfigureAwait(false);
                CheckWeights();
            }
            catch (OperationCanceledException)
            {
                // The router is stopping.
            }
            finally
            {
                _soon.TryRemove(server, out _);
            }
        });
        if (_soon.TryAdd(server, probe.Unwrap()))
        {
            probe.Start(TaskScheduler.Default);
        }
    }

    /// <summary>True when the server answered both its health check and its model info.</summary>
    public async Task<bool> ProbeAsync(Upstream server, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(ProbeTimeout);
        var updates = Volatile.Read(ref _weightUpdates);
        string? down;
        try
        {
            using var health = await http.GetAsync(server.Url("/health"), timeout.Token).ConfigureAwait(false);
            down = health.IsSuccessStatusCode
                ? Learn(server, await ServerInfo.FetchAsync(http, server, options.ApiKey, timeout.Token).ConfigureAwait(false), updates)
                : $"its /health answered {(int)health.StatusCode}";
        }
        catch (HttpRequestException e)
        {
            down = e.Message;
        }
        catch (ServerInfoException e)
        {
            down = $"it {e.Message}";
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            down = $"it did not answer its health probe within {ProbeTimeout.TotalSeconds:0} s";
        }
        if (down is null)
        {
            server.MarkUp();
        }
        else
        {
            server.MarkDown(down);
        }
        return down is null;
    }

    /// <summary>
    /// Takes in what the server announced; null when it may serve, else why not. Its weights version is taken only when
    /// no weight update through the router runs, began or ended since the probe began (<paramref name="updates"/>): the
    /// update's own answers set the versions then.
    /// </summary>
    private string? Learn(Upstream server, ServerInfo info, int updates)
    {
        if (info.Role != server.RoleName)
        {
            return $"it now runs role '{info.Role}'";
        }
        if (server.Role == ServerRole.Prefill)
        {
            if (info.TransferPort is not { } port)
            {
                return "it announces no transfer_port";
            }
            var transfer = new TransferEndpoint(server.BaseUri.IdnHost, port);
            var before = server.Transfer;
            if (before != transfer)
            {
                server.Transfer = transfer;
                logger.LogWarning("prefill server {Server} now takes transfers on port {Port} (it was {Before}: restarted?); the router names the new port from now on", server.Name, port, before?.Port);
            }
        }
        var previous = server.WeightVersion;
        if (info.WeightVersion is { } version && version != previous && Volatile.Read(ref _updatingWeights) == 0 && Volatile.Read(ref _weightUpdates) == updates)
        {
            server.WeightVersion = version;
            if (previous is not null)
            {
                logger.LogWarning("{Kind} {Server} changed its weights version from '{Before}' to '{After}' (not through the router's /update_weights_from_disk)", server.Kind, server.Name, previous, version);
            }
        }
        return null;
    }

    /// <summary>Logs an error once each time the servers' weights versions come to differ, and a line when they agree again.</summary>
    private void CheckWeights()
    {
        if (Volatile.Read(ref _updatingWeights) > 0)
        {
            return;
        }
        var now = servers();
        var difference = FleetCheck.WeightsDiffer(now);
        lock (_lock)
        {
            if (difference == _warnedDifference)
            {
                return;
            }
            if (difference is not null)
            {
                logger.LogError("{Difference}: {Consequence}", difference, weightsDiffer);
            }
            else
            {
                logger.LogInformation("every server has weights version '{Version}' again", now.FirstOrDefault()?.WeightVersion);
            }
            _warnedDifference = difference;
        }
    }

    private sealed class Done(Action action) : IDisposable
    {
        public void Dispose() => action();
    }
}
