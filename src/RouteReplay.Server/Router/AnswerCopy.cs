using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.Router;

/// <summary>
/// Relays a server's answer to the client, byte for byte and as it comes (so streams stay streams). A server that
/// fails in the middle of an answer ends a stream with an error event and <c>[DONE]</c> (a whole answer with a closed
/// connection); an error event or a 5xx from the server is noted for the router's log and counts.
/// </summary>
internal static class AnswerCopy
{
    /// <summary>
    /// Relays <paramref name="response"/>. With <paramref name="holdUntilFirstByte"/>, nothing (status, headers) goes to
    /// the client before the server's first body bytes have come, so a server that fails before then has sent the client
    /// nothing and the request may go to another server.
    /// </summary>
    /// <param name="decorate">Sets the router's own response headers, once the server's are copied.</param>
    /// <returns>Null when the answer was relayed (whole, or ended as above); else why the server failed before any of it reached the client.</returns>
    public static async Task<string?> RelayAsync(HttpContext context, HttpResponseMessage response, Upstream server, Action<HttpResponse> decorate, bool holdUntilFirstByte)
    {
        var http = context.Response;
        var cancel = context.RequestAborted;
        var stream = response.Content.Headers.ContentType?.MediaType == "text/event-stream";
        var errors = stream ? new SseErrorDetector() : null;
        var failure = (int)response.StatusCode >= 500 ? new ArrayBufferWriter<byte>() : null;
        var buffer = ArrayPool<byte>.Shared.Rent(16 << 10);
        try
        {
            Stream? body = null;
            var read = -1;
            if (holdUntilFirstByte)
            {
                try
                {
                    body = await response.Content.ReadAsStreamAsync(cancel).ConfigureAwait(false);
                    read = await body.ReadAsync(buffer, cancel).ConfigureAwait(false);
                }
                catch (Exception e) when (e is IOException or HttpRequestException && !cancel.IsCancellationRequested)
                {
                    server.CountFailure($"it failed before answering: {e.Message}");
                    return e.Message;
                }
            }
            WriteHead(http, response);
            decorate(http);
            try
            {
                body ??= await response.Content.ReadAsStreamAsync(cancel).ConfigureAwait(false);
                if (read < 0)
                {
                    read = await body.ReadAsync(buffer, cancel).ConfigureAwait(false);
                }
                while (read > 0)
                {
                    errors?.Feed(buffer.AsSpan(0, read));
                    if (failure is not null && failure.WrittenCount < 4096)
                    {
                        failure.Write(buffer.AsSpan(0, Math.Min(read, 4096 - failure.WrittenCount)));
                    }
                    await http.Body.WriteAsync(buffer.AsMemory(0, read), cancel).ConfigureAwait(false);
                    await http.Body.FlushAsync(cancel).ConfigureAwait(false);
                    read = await body.ReadAsync(buffer, cancel).ConfigureAwait(false);
                }
            }
            finally
            {
                if (body is not null)
                {
                    await body.DisposeAsync().ConfigureAwait(false);
                }
            }
            if (errors is { Seen: true })
            {
                var notes = RelayNotes.Of(context);
                notes.StreamFailureStatus = 500;
                notes.Error = $"{server.Kind} {server.Name} ended the stream with an error event";
            }
            if (failure is not null)
            {
                RelayNotes.Of(context).Error = $"{server.Kind} {server.Name}: {UpstreamErrors.Parse(System.Text.Encoding.UTF8.GetString(failure.WrittenSpan)).Message}";
            }
        }
        catch (Exception e) when (e is IOException or HttpRequestException && !cancel.IsCancellationRequested)
        {
            server.CountFailure($"it failed in the middle of an answer: {e.Message}");
            var notes = RelayNotes.Of(context);
            notes.Error = $"{server.Kind} {server.Name} failed in the middle of the answer: {e.Message}";
            notes.StreamFailureStatus = 502;
            if (!stream)
            {
                context.Abort();
                return null;
            }
            await http.Body.WriteAsync(ErrorEvent($"the {server.Kind} {server.Name} failed in the middle of the stream: {e.Message}"), cancel).ConfigureAwait(false);
            await http.Body.FlushAsync(cancel).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return null;
    }

    private static void WriteHead(HttpResponse http, HttpResponseMessage response)
    {
        http.StatusCode = (int)response.StatusCode;
        foreach (var (name, values) in response.Headers.Concat(response.Content.Headers))
        {
            if (!RouterProxy.NotForwarded.Contains(name))
            {
                http.Headers[name] = values.ToArray();
            }
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
}
