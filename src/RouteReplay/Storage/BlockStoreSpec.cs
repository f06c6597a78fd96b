using System.Globalization;
using System.Net;

namespace RouteReplay.Storage;

/// <summary>Which block store <c>--kv-store</c> names: <c>file:DIR</c> or <c>redis://HOST:PORT[,HOST:PORT...]</c>.</summary>
public abstract record BlockStoreSpec
{
    private const string FilePrefix = "file:";
    private const string RedisPrefix = "redis://";

    /// <summary>Parses a <c>--kv-store</c> value; throws an <see cref="ArgumentException"/> naming the flag when it is malformed.</summary>
    public static BlockStoreSpec Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.StartsWith(FilePrefix, StringComparison.Ordinal))
        {
            var directory = text[FilePrefix.Length..];
            if (directory.Length == 0)
            {
                throw Error(text, "file: needs a folder, e.g. file:/data/kv");
            }
            return new FileStoreSpec(directory);
        }
        if (text.StartsWith(RedisPrefix, StringComparison.Ordinal))
        {
            var endpoints = new List<DnsEndPoint>();
            foreach (var part in text[RedisPrefix.Length..].Split(','))
            {
                endpoints.Add(ParseEndpoint(text, part.Trim()));
            }
            return new RedisStoreSpec(endpoints);
        }
        throw Error(text, "must be file:DIR or redis://HOST:PORT[,HOST:PORT...]");
    }

    /// <summary><c>HOST:PORT</c> or <c>[IPv6]:PORT</c>; the port is required.</summary>
    private static DnsEndPoint ParseEndpoint(string text, string part)
    {
        if (part.Length == 0)
        {
            throw Error(text, "has an empty HOST:PORT");
        }
        string host;
        string? port;
        if (part.StartsWith('['))
        {
            var close = part.IndexOf(']', StringComparison.Ordinal);
            host = close < 0 ? "" : part[1..close];
            port = close >= 0 && part.AsSpan(close + 1).StartsWith(":") ? part[(close + 2)..] : null;
        }
        else
        {
            var colon = part.LastIndexOf(':');
            host = colon < 0 ? part : part[..colon];
            port = colon < 0 ? null : part[(colon + 1)..];
            if (host.Contains(':', StringComparison.Ordinal))
            {
                throw Error(text, $"'{part}': write an IPv6 address in brackets, e.g. redis://[::1]:6379");
            }
        }
        if (host.Length == 0)
        {
            throw Error(text, $"'{part}' has no host");
        }
        if (port is null)
        {
            throw Error(text, $"'{part}' has no port: write redis://HOST:PORT (Redis listens on 6379 by default)");
        }
        if (!int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number is < 1 or > 65535)
        {
            throw Error(text, $"'{part}' needs a port in 1..65535");
        }
        return new DnsEndPoint(host, number);
    }

    private static ArgumentException Error(string text, string message) => new($"--kv-store '{text}' {message}", "kv-store");
}

/// <summary><c>file:DIR</c>: a <see cref="FileBlockStore"/>.</summary>
public sealed record FileStoreSpec(string Directory) : BlockStoreSpec;

/// <summary><c>redis://...</c>: a <see cref="RedisBlockStore"/> over one server or a cluster.</summary>
public sealed record RedisStoreSpec(IReadOnlyList<DnsEndPoint> Endpoints) : BlockStoreSpec;
