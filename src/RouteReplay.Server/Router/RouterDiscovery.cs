namespace RouteReplay.Server.Router;

/// <summary>At startup: asks every server for its model info until it answers or the startup timeout passes.</summary>
internal sealed class RouterDiscovery(HttpClient http, RouterOptions options)
{
    /// <exception cref="RouterStartException">A server did not answer in time, or answered with an error.</exception>
    public async Task<ServerInfo[]> RunAsync(Upstream[] servers, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(options.StartupTimeout);
        return await Task.WhenAll(servers.Select(s => InfoAsync(s, deadline.Token, cancellationToken))).ConfigureAwait(false);
    }

    private async Task<ServerInfo> InfoAsync(Upstream server, CancellationToken deadline, CancellationToken cancellationToken)
    {
        string? lastError = null;
        while (true)
        {
            try
            {
                return await ServerInfo.FetchAsync(http, server, options.ApiKey, deadline).ConfigureAwait(false);
            }
            catch (ServerInfoException e)
            {
                throw new RouterStartException($"--{server.Flag} {server.Name} {e.Message}");
            }
            catch (HttpRequestException e)
            {
                lastError = e.Message;
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
        throw new RouterStartException($"--{server.Flag} {server.Name} did not answer within {options.StartupTimeout.TotalSeconds:0.#} s (--startup-timeout-seconds){(lastError is null ? "" : $": {lastError}")}");
    }
}
