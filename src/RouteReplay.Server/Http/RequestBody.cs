using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace RouteReplay.Server.Http;

/// <summary>Reads a request body, whole, within a size limit; as bytes or as one JSON object within a nesting limit.</summary>
public static class RequestBody
{
    /// <summary>Deepest nesting a request may have; deeper bodies are malformed (400).</summary>
    public const int MaxDepth = 32;

    private static readonly JsonDocumentOptions ParseOptions = new() { MaxDepth = MaxDepth, CommentHandling = JsonCommentHandling.Disallow, AllowTrailingCommas = false };

    /// <summary>The whole body as sent.</summary>
    /// <exception cref="ApiException">
    /// 413 when the body is too large; 400 (closing the connection) when its framing is malformed, a chunk size that is
    /// not hexadecimal or overflows among others.
    /// </exception>
    public static async Task<ReadOnlyMemory<byte>> ReadAllAsync(HttpContext context, long maxBytes)
    {
        if (context.Request.ContentLength > maxBytes)
        {
            throw TooLarge(maxBytes);
        }
        var buffer = new ArrayBufferWriter<byte>(4096);
        var body = context.Request.Body;
        try
        {
            while (true)
            {
                var memory = buffer.GetMemory(16 << 10);
                var read = await body.ReadAsync(memory, context.RequestAborted).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }
                buffer.Advance(read);
                if (buffer.WrittenCount > maxBytes)
                {
                    throw TooLarge(maxBytes);
                }
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw TooLarge(maxBytes);
        }
        catch (BadHttpRequestException e)
        {
            throw Unreadable(e.StatusCode, e.Message);
        }
        catch (IOException e) when (!context.RequestAborted.IsCancellationRequested)
        {
            // Kestrel reports a chunk size too large for its parser as an IOException, not as a bad request.
            throw Unreadable(StatusCodes.Status400BadRequest, e.Message);
        }
        return buffer.WrittenMemory;
    }

    /// <exception cref="ApiException">413 when the body is too large, 400 when it is empty, malformed, or not an object.</exception>
    public static async Task<JsonDocument> ReadObjectAsync(HttpContext context, long maxBytes) =>
        await ReadOptionalObjectAsync(context, maxBytes).ConfigureAwait(false) ?? throw ApiException.BadRequest("the request body is empty; send a JSON object");

    /// <summary>As <see cref="ReadObjectAsync"/>, but an empty body is null (endpoints whose fields are all optional).</summary>
    public static async Task<JsonDocument?> ReadOptionalObjectAsync(HttpContext context, long maxBytes)
    {
        var bytes = await ReadAllAsync(context, maxBytes).ConfigureAwait(false);
        if (bytes.Length == 0)
        {
            return null;
        }
        if (!System.Text.Unicode.Utf8.IsValid(bytes.Span))
        {
            throw new ApiException(400, "the request body is not valid UTF-8", null, "invalid_json");
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes, ParseOptions);
        }
        catch (JsonException e)
        {
            throw new ApiException(400, $"the request body is not valid JSON: {e.Message}", null, "invalid_json");
        }
        catch (ArgumentException e)
        {
            throw new ApiException(400, $"the request body is not valid JSON: {UserErrors.Message(e)}", null, "invalid_json");
        }
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            document.Dispose();
            throw new ApiException(400, "the request body must be a JSON object", null, "invalid_json");
        }
        return document;
    }

    private static ApiException TooLarge(long maxBytes) => new(413, $"the request body is larger than the limit of {maxBytes} bytes", null, "request_too_large");

    private static ApiException Unreadable(int status, string reason) =>
        new(status, $"the request body could not be read: {reason}", null, "malformed_body") { ClosesConnection = true };
}
