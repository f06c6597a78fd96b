namespace RouteReplay.Server.Http;

/// <summary>A request that gets an OpenAI-style error answer with <see cref="StatusCode"/>.</summary>
public sealed class ApiException(int statusCode, string message, string? param = null, string? code = null) : Exception(message)
{
    public int StatusCode { get; } = statusCode;

    public string? Param { get; } = param;

    public string? Code { get; } = code;

    /// <summary>Seconds to put in <c>Retry-After</c> (503 only).</summary>
    public int? RetryAfterSeconds { get; init; }

    /// <summary>The request was not read to its end (its framing is broken), so its connection cannot carry another.</summary>
    public bool ClosesConnection { get; init; }

    public static ApiException BadRequest(string message, string? param = null) => new(400, message, param, "invalid_value");
}
