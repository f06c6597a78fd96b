using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace RouteReplay.Server.Router;

/// <summary>
/// Ends the requests still in flight when the router's shutdown grace period is over as <c>serve</c> ends its own: the
/// router asks each request's decode server to abort it (<c>/abort_request</c> with the relay id), so the decode server
/// answers it with finish reason abort, its final chunk with the routing so far and <c>[DONE]</c>, and the router relays
/// that answer before it closes the connection. A request whose abort did not take (it had not reached its decode
/// server yet) is asked again until it ends or the host stops.
/// </summary>
internal sealed class RouterShutdown(RouterOptions options, RelayRegistry relays, HttpClient http, ILogger logger)
{
    private static readonly TimeSpan Retry = TimeSpan.FromMilliseconds(250);

    private readonly RateLimitedLog _failures = new(message => logger.LogWarning("{Message}", message), RateLimitedLog.DefaultInterval);

    public void Register(IHostApplicationLifetime lifetime) =>
        lifetime.ApplicationStopping.Register(() => _ = AbortAfterGraceAsync(lifetime.ApplicationStopped));

    private async Task AbortAfterGraceAsync(CancellationToken stopped)
    {
        try
        {
            await Task.Delay(options.ShutdownGracePeriod, stopped).ConfigureAwait(false);
            var aborted = new HashSet<string>(StringComparer.Ordinal);
            var first = true;
            while (relays.Snapshot().Where(r => !aborted.Contains(r.Key)).ToArray() is { Length: > 0 } running)
            {
                if (first)
                {
                    logger.LogInformation("Shutdown grace period of {Seconds} s over: aborting {Count} requests still running", options.ShutdownGracePeriod.TotalSeconds, running.Length);
                    first = false;
                }
                var done = await Task.WhenAll(running.Select(r => AbortAsync(r.Key, r.Value, stopped))).ConfigureAwait(false);
                aborted.UnionWith(running.Where((_, i) => done[i]).Select(r => r.Key));
                await Task.Delay(Retry, stopped).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            // Every request ended, or the host stopped.
        }
    }

    /// <summary>True when the decode server aborted the request.</summary>
    private async Task<bool> AbortAsync(string relayId, Upstream decode, CancellationToken stopped)
    {
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, decode.Url("/abort_request"))
            {
                Content = new StringContent($"{{\"rid\": \"{JsonEncodedText.Encode(relayId)}\"}}", Encoding.UTF8, "application/json"),
            };
            if (options.ApiKey is { } key)
            {
                request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
            }
            using var response = await http.SendAsync(request, stopped).ConfigureAwait(false);
            using var answer = JsonDocument.Parse(await response.Content.ReadAsStringAsync(stopped).ConfigureAwait(false));
            return answer.RootElement.TryGetProperty("num_aborted_requests", out var count) && count.TryGetInt32(out var n) && n > 0;
        }
        catch (Exception e) when (e is HttpRequestException or JsonException)
        {
            _failures.Write(decode.Name, $"could not abort a request on {decode.Kind} {decode.Name}: {e.Message}");
            return false;
        }
    }
}
