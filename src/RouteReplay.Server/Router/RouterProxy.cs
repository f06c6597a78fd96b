using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.Router;

/// <summary>
/// Relays a request to a decode server and its answer back, byte for byte and as it comes (so streams stay streams).
/// A generation request carries <see cref="EngineHost.PrefillHeader"/>: the prefill servers by load, the least loaded
/// first. A decode server that cannot be connected to is skipped for the next one; one that fails after answering
/// ends a stream with an error event (a whole answer with a closed connection).
/// </summary>
internal sealed class RouterProxy(RouterServer router, HttpClient http, ILogger logger)
{
    private static readonly HashSet<string> NotForwarded = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "TE", "Trailer",
        "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", EngineHost.PrefillHeader,
    };

    private int _turn;

    public Task GenerateAsync(HttpContext context) => RelayAsync(context, withPrefill: true);

    public Task ForwardAsync(HttpContext context) => RelayAsync(context, withPrefill: false);

    private async Task RelayAsync(HttpContext context, bool withPrefill)
    {
        var body = await ReadBodyAsync(context, router.Options.MaxRequestBodyBytes).ConfigureAwait(false);
        var turn = Interlocked.Increment(ref _turn);
        string? prefillHeader = null;
        Upstream.Load? prefillLoad = null;
        if (withPrefill)
        {
            var prefill = Upstream.ByLoad(router.Prefill, turn);
            prefillLoad = prefill[0].Enter();
            prefillHeader = string.Join(",", prefill.Select(p => p.Transfer!.ToString()));
        }
        try
        {
            foreach (var decode in Upstream.ByLoad(router.Decode, turn))
            {
                using var load = decode.Enter();
                HttpResponseMessage response;
                try
                {
                    using var request = BuildRequest(context, decode, body, prefillHeader);
                    response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, context.RequestAborted).ConfigureAwait(false);
                }
                catch (HttpRequestException e) when (e.HttpRequestError is HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError && !context.RequestAborted.IsCancellationRequested)
                {
                    decode.CountFailure();
                    router.Metrics.CountRetry();
                    logger.LogWarning("decode server {Server} cannot be reached ({Reason}); trying the next", decode.Name, e.Message);
                    continue;
                }
                catch (HttpRequestException e) when (!context.RequestAborted.IsCancellationRequested)
                {
                    decode.CountFailure();
                    throw new ApiException(502, $"the decode server {decode.Name} failed: {e.Message}", null, "upstream_failed");
                }
                using (response)
                {
                    decode.IsUp = true;
                    await CopyResponseAsync(context, response, decode).ConfigureAwait(false);
                }
                return;
            }
            throw new ApiException(502, $"no decode server could be reached ({string.Join(", ", router.Decode.Select(d => d.Name))})", null, "no_decode_server");
        }
        finally
        {
            prefillLoad?.Dispose();
        }
    }

    private async Task CopyResponseAsync(HttpContext context, HttpResponseMessage response, Upstream decode)
    {
        var http = context.Response;
        var cancel = context.RequestAborted;
        http.StatusCode = (int)response.StatusCode;
        foreach (var (name, values) in response.Headers.Concat(response.Content.Headers))
        {
            if (!NotForwarded.Contains(name))
            {
                http.Headers[name] = values.ToArray();
            }
        }
        var stream = response.Content.Headers.ContentType?.MediaType == "text/event-stream";
        var buffer = ArrayPool<byte>.Shared.Rent(16 << 10);
        try
        {
            await using var body = await response.Content.ReadAsStreamAsync(cancel).ConfigureAwait(false);
            int read;
            while ((read = await body.ReadAsync(buffer, cancel).ConfigureAwait(false)) > 0)
            {
                await http.Body.WriteAsync(buffer.AsMemory(0, read), cancel).ConfigureAwait(false);
                await http.Body.FlushAsync(cancel).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or HttpRequestException && !cancel.IsCancellationRequested)
        {
            decode.CountFailure();
            logger.LogWarning("decode server {Server} failed in the middle of an answer: {Reason}", decode.Name, e.Message);
            if (!stream)
            {
                context.Abort();
                return;
            }
            await http.Body.WriteAsync(ErrorEvent($"the decode server {decode.Name} failed in the middle of the stream: {e.Message}"), cancel).ConfigureAwait(false);
            await http.Body.FlushAsync(cancel).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static byte[] ErrorEvent(string message)
    {
        var json = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(json))
        {
            ErrorResponses.WriteBody(writer, 502, message, null, "upstream_failed");
        }
        return [.. "data: "u8, .. json.WrittenSpan, .. "\n\ndata: [DONE]\n\n"u8];
    }

    /// <summary>The client's request for <paramref name="server"/>: method, path, query, body and headers (hop-by-hop ones left out).</summary>
    public static HttpRequestMessage BuildRequest(HttpContext context, Upstream server, byte[] body, string? prefillHeader)
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
        if (prefillHeader is not null)
        {
            request.Headers.TryAddWithoutValidation(EngineHost.PrefillHeader, prefillHeader);
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
