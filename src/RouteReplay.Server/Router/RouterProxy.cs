using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using RouteReplay.Server.Disaggregation;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.Router;

/// <summary>
/// Relays a request to a decode server and its answer back (<see cref="AnswerCopy"/>).
/// A generation request carries <see cref="FleetHeaders.Prefill"/>: the prefill servers by load, the least loaded
/// first, signed with the cluster key when there is one; and a relay id, by which the router can have the decode server
/// abort it. A decode server that cannot be connected to is skipped for the next one.
/// </summary>
internal sealed class RouterProxy(RouterServer router, HttpClient http, PromptSourceRelay promptSources, ILogger logger)
{
    /// <summary>Headers that are the connection's own, or the router's, never relayed either way.</summary>
    internal static readonly HashSet<string> NotForwarded = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "TE", "Trailer",
        "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", FleetHeaders.Prefill, FleetHeaders.PrefillSignature,
        FleetHeaders.RelayId,
    };

    private int _turn;

    public Task GenerateAsync(HttpContext context) => RelayAsync(context, withPrefill: true);

    public Task ForwardAsync(HttpContext context) => RelayAsync(context, withPrefill: false);

    private async Task RelayAsync(HttpContext context, bool withPrefill)
    {
        var body = await ReadBodyAsync(context, router.Options.MaxRequestBodyBytes).ConfigureAwait(false);
        var turn = Interlocked.Increment(ref _turn);
        var headers = new List<(string, string)>();
        (Upstream, string)[] named = [];
        Upstream.Load? prefillLoad = null;
        string? relayId = null;
        if (withPrefill)
        {
            var prefill = Upstream.ByLoad(router.Prefill, turn);
            prefillLoad = prefill[0].Enter();
            named = [.. prefill.Select(p => (p, p.Transfer!.ToString()))];
            var list = string.Join(",", named.Select(n => n.Item2));
            headers.Add((FleetHeaders.Prefill, list));
            if (router.Options.ClusterKey is { } key)
            {
                headers.Add((FleetHeaders.PrefillSignature, key.SignPrefillList(list)));
            }
            relayId = RelayRegistry.NewId();
            headers.Add((FleetHeaders.RelayId, relayId));
        }
        try
        {
            foreach (var decode in Upstream.ByLoad(router.Decode, turn))
            {
                using var load = decode.Enter();
                using var relayed = relayId is null ? null : router.Relays.Enter(relayId, decode);
                HttpResponseMessage response;
                try
                {
                    using var request = BuildRequest(context, decode, body, headers);
                    response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, context.RequestAborted).ConfigureAwait(false);
                }
                catch (HttpRequestException e) when (e.HttpRequestError is HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError && !context.RequestAborted.IsCancellationRequested)
                {
                    decode.CountFailure(e.Message);
                    router.Metrics.CountRetry();
                    logger.LogWarning("decode server {Server} cannot be reached ({Reason}); trying the next", decode.Name, e.Message);
                    continue;
                }
                catch (HttpRequestException e) when (!context.RequestAborted.IsCancellationRequested)
                {
                    decode.CountFailure(e.Message);
                    throw Failed(context, new ApiException(502, $"the decode server {decode.Name} failed: {e.Message}", null, "upstream_failed"));
                }
                using (response)
                {
                    decode.MarkUp();
                    await AnswerCopy.RelayAsync(context, response, decode, http => promptSources.Apply(http, decode, named), holdUntilFirstByte: false).ConfigureAwait(false);
                }
                return;
            }
            throw Failed(context, new ApiException(502, $"no decode server could be reached ({string.Join(", ", router.Decode.Select(d => d.Name))})", null, "no_decode_server"));
        }
        finally
        {
            prefillLoad?.Dispose();
        }
    }

    private static ApiException Failed(HttpContext context, ApiException error)
    {
        RelayNotes.Of(context).Error = error.Message;
        return error;
    }

    /// <summary>The client's request for <paramref name="server"/>: method, path, query, body and headers (hop-by-hop ones left out), with the router's own headers.</summary>
    public static HttpRequestMessage BuildRequest(HttpContext context, Upstream server, byte[] body, IEnumerable<(string Name, string Value)> extra)
    {
        var incoming = context.Request;
        var request = new HttpRequestMessage(new HttpMethod(incoming.Method), server.Url(incoming.Path.Value + incoming.QueryString.Value));
        if (body.Length > 0 || HttpMethods.IsPost(incoming.Method))
        {
            request.Content = new ByteArrayContent(body);
        }
        foreach (var (name, values) in incoming.Headers)
        {
            if (NotForwarded.Contains(name))
            {
                continue;
            }
            if (!request.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values))
            {
                request.Content?.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
            }
        }
        foreach (var (name, value) in extra)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }
        return request;
    }

    /// <summary>The whole request body (see <see cref="RequestBody.ReadAllAsync"/>).</summary>
    public static async Task<byte[]> ReadBodyAsync(HttpContext context, long maxBytes) =>
        (await RequestBody.ReadAllAsync(context, maxBytes).ConfigureAwait(false)).ToArray();

    /// <summary>The message of an OpenAI-style error body, else the body's start.</summary>
    public static string ErrorMessage(string body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            return document.RootElement.GetProperty("error").GetProperty("message").GetString() ?? body;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return body.Length > 300 ? body[..300] : body;
        }
    }
}
