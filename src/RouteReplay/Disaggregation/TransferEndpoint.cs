using System.Globalization;

namespace RouteReplay.Disaggregation;

/// <summary>A prefill server's transfer address: <c>host:port</c> (an IPv6 address in brackets, <c>[::1]:9000</c>).</summary>
public sealed record TransferEndpoint(string Host, int Port)
{
    /// <exception cref="FormatException">Not <c>host:port</c> with a port in 1..65535.</exception>
    public static TransferEndpoint Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var trimmed = text.Trim();
        var colon = trimmed.LastIndexOf(':');
        if (colon <= 0 || colon == trimmed.Length - 1)
        {
            throw new FormatException($"'{text}' is not host:port");
        }
        var host = trimmed[..colon];
        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            host = host[1..^1];
        }
        if (host.Length == 0 || host.Contains(' ', StringComparison.Ordinal)
            || !int.TryParse(trimmed[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            throw new FormatException($"'{text}' is not host:port with a port in 1..65535");
        }
        return new TransferEndpoint(host, port);
    }

    public override string ToString() => Host.Contains(':', StringComparison.Ordinal) ? $"[{Host}]:{Port}" : $"{Host}:{Port}";
}
