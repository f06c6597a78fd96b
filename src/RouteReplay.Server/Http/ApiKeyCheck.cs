using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace RouteReplay.Server.Http;

/// <summary>Checks <c>Authorization: Bearer KEY</c> in constant time (over SHA-256 digests, so the key's length leaks nothing either).</summary>
public sealed class ApiKeyCheck(string apiKey)
{
    private readonly byte[] _expected = SHA256.HashData(Encoding.UTF8.GetBytes(apiKey));

    /// <summary>Paths anyone may call: liveness and metrics (with a trailing slash or not, as routing matches them).</summary>
    public static bool IsOpen(PathString path) => path.Value?.TrimEnd('/') is "/health" or "/metrics";

    public bool IsAuthorized(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        const string Scheme = "Bearer ";
        if (!header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }
        var given = SHA256.HashData(Encoding.UTF8.GetBytes(header[Scheme.Length..].Trim()));
        return CryptographicOperations.FixedTimeEquals(given, _expected);
    }
}
