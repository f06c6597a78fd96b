using System.Globalization;
using System.Net;

namespace RouteReplay.Storage;

/// <summary>Which block store <c>--kv-store</c> names: <c>file:DIR</c> or <c>redis://HOST:PORT[,HOST:PORT...]</c>.</summary>
public abstract record BlockStoreSpec
{
    private const string FilePrefix = "file:";
    private const string RedisPrefix = "redis://";
    private const int DefaultRedisPort = 6379;

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

    private static DnsEndPoint ParseEndpoint(string text, string part)
    {
        if (part.Length == 0)
        {
            throw Error(text, "has an empty HOST:PORT");
        }
        var colon = part.LastIndexOf(':');
        var host = colon < 0 ? part : part[..colon];
        var port = DefaultRedisPort;
        if (colon >= 0 && (!int.TryParse(part[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out port) || port is < 1 or > 65535))
        {
            throw Error(text, $"'{part}' needs a port in 1..65535");
        }
        host = host.Trim('[', ']');
        if (host.Length == 0)
        {
            throw Error(text, $"'{part}' has no host");
        }
        return new DnsEndPoint(host, port);
    }

    private static ArgumentException Error(string text, string message) => new($"--kv-store '{text}' {message}", "kv-store");
}

/// <summary><c>file:DIR</c>: a <see cref="FileBlockStore"/>.</summary>
public sealed record FileStoreSpec(string Directory) : BlockStoreSpec;

/// <summary><c>redis://...</c>: a <see cref="RedisBlockStore"/> over one server or a cluster.</summary>
public sealed record RedisStoreSpec(IReadOnlyList<DnsEndPoint> Endpoints) : BlockStoreSpec;
