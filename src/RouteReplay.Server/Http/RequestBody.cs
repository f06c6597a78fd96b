using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace RouteReplay.Server.Http;

/// <summary>Reads a request body as one JSON object, within a size limit and a nesting limit.</summary>
public static class RequestBody
{
    /// <summary>Deepest nesting a request may have; deeper bodies are malformed (400).</summary>
    public const int MaxDepth = 32;

    private static readonly JsonDocumentOptions ParseOptions = new() { MaxDepth = MaxDepth, CommentHandling = JsonCommentHandling.Disallow, AllowTrailingCommas = false };

    /// <exception cref="ApiException">413 when the body is too large, 400 when it is empty, malformed, or not an object.</exception>
    public static async Task<JsonDocument> ReadObjectAsync(HttpContext context, long maxBytes)
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
            throw new ApiException(e.StatusCode, $"the request body could not be read: {e.Message}");
        }
        if (buffer.WrittenCount == 0)
        {
            throw ApiException.BadRequest("the request body is empty; send a JSON object");
        }
        if (!System.Text.Unicode.Utf8.IsValid(buffer.WrittenSpan))
        {
            throw new ApiException(400, "the request body is not valid UTF-8", null, "invalid_json");
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(buffer.WrittenMemory, ParseOptions);
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
}
