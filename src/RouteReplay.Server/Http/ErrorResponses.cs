using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace RouteReplay.Server.Http;

/// <summary>OpenAI-style error bodies: <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
public static class ErrorResponses
{
    public static string TypeFor(int status) => status switch
    {
        400 or 413 or 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        405 => "invalid_request_error",
        429 or 503 => "server_overloaded",
        _ => "server_error",
    };

    public static Task WriteAsync(HttpContext context, ApiException error) =>
        WriteAsync(context, error.StatusCode, error.Message, error.Param, error.Code, error.RetryAfterSeconds, error.ClosesConnection);

    public static async Task WriteAsync(HttpContext context, int status, string message, string? param = null, string? code = null, int? retryAfterSeconds = null, bool closeConnection = false)
    {
        var response = context.Response;
        if (response.HasStarted)
        {
            return;
        }
        response.StatusCode = status;
        response.ContentType = "application/json";
        if (retryAfterSeconds is { } retry)
        {
            response.Headers.RetryAfter = retry.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        if (status == 413 || closeConnection)
        {
            // The body was not read to its end, so the connection cannot carry another request.
            response.Headers.Connection = "close";
        }
        if (status == 401)
        {
            response.Headers.WWWAuthenticate = "Bearer";
        }
        using (var writer = new Utf8JsonWriter(response.BodyWriter, JsonOutput.Options))
        {
            WriteBody(writer, status, message, param, code);
        }
        await response.BodyWriter.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>The error object, also used inside a stream as <c>data: {"error": ...}</c>.</summary>
    public static void WriteBody(Utf8JsonWriter writer, int status, string message, string? param, string? code)
    {
        writer.WriteStartObject();
        writer.WriteStartObject("error");
        writer.WriteString("message", message);
        writer.WriteString("type", TypeFor(status));
        WriteNullable(writer, "param", param);
        WriteNullable(writer, "code", code ?? status.ToString(System.Globalization.CultureInfo.InvariantCulture));
        writer.WriteEndObject();
        writer.WriteEndObject();
        writer.Flush();
    }

    private static void WriteNullable(Utf8JsonWriter writer, string name, string? value)
    {
        if (value is null)
        {
            writer.WriteNull(name);
        }
        else
        {
            writer.WriteString(name, value);
        }
    }
}
