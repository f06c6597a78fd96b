using System.Text.Json;

namespace RouteReplay.Server.Router;

/// <summary>An OpenAI-style error body a server answered, read for its message, field and code.</summary>
internal sealed record UpstreamError(string Message, string? Param, string? Code);

internal static class UpstreamErrors
{
    /// <summary>The error of an OpenAI-style body; else the body's start as the message.</summary>
    public static UpstreamError Parse(string body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var error = document.RootElement.GetProperty("error");
            return new UpstreamError(error.GetProperty("message").GetString() ?? body, Text(error, "param"), Text(error, "code"));
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return new UpstreamError(body.Length > 300 ? body[..300] : body, null, null);
        }
    }

    private static string? Text(JsonElement error, string name) =>
        error.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
