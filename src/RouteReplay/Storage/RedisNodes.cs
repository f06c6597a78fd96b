using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using StackExchange.Redis;

namespace RouteReplay.Storage;

/// <summary>
/// Which node of a Redis deployment holds a key (the primary owning its hash slot in a cluster, as the cluster's own
/// map says, even while that node is unreachable; the one server otherwise), and why a node's connection last failed.
/// </summary>
/// <remarks>
/// The client's own server selection cannot be asked which node owns a key: while the owner is disconnected it picks
/// another node. The slot map read here is the one the nodes report, refreshed when the client sees it change.
/// </remarks>
internal sealed class RedisNodes
{
    private static readonly long RefreshEvery = Stopwatch.Frequency;

    private readonly string _fallback;
    private readonly ConcurrentDictionary<EndPoint, string> _names = new();
    private readonly ConcurrentDictionary<string, EndPoint> _endpoints = new();
    private readonly ConcurrentDictionary<string, string> _failures = new();
    private ConnectionMultiplexer? _connection;
    private ClusterConfiguration? _cluster;
    private int _stale = 1;
    private long _nextRefresh;

    /// <param name="configured">The endpoints the store was given.</param>
    /// <param name="description">The store's description, the one node of a deployment whose nodes are not known yet.</param>
    public RedisNodes(IReadOnlyList<DnsEndPoint> configured, string description) =>
        _fallback = configured.Count == 1 ? $"{configured[0].Host}:{configured[0].Port}" : description;

    /// <summary>Watches <paramref name="options"/>' connection attempts; call before connecting.</summary>
    public void Watch(ConfigurationOptions options) => options.ConnectionAttemptCompleted += (_, e) =>
    {
        if (e.ConnectionType != ConnectionType.Interactive || e.EndPoint is not { } endpoint)
        {
            return;
        }
        if (e.IsSuccess)
        {
            Answered(NameOf(endpoint));
        }
        else
        {
            _failures[NameOf(endpoint)] = Describe(e.FailureType, e.Exception);
        }
    };

    /// <summary>Watches the connected multiplexer's failures and slot map changes.</summary>
    public void Watch(ConnectionMultiplexer connection)
    {
        _connection = connection;
        connection.ConnectionFailed += (_, e) =>
        {
            if (e.ConnectionType == ConnectionType.Interactive && e.EndPoint is { } endpoint && e.FailureType != ConnectionFailureType.MaintenanceHandoff)
            {
                _failures[NameOf(endpoint)] = Describe(e.FailureType, e.Exception);
            }
        };
        connection.ConfigurationChanged += (_, _) => Volatile.Write(ref _stale, 1);
        connection.HashSlotMoved += (_, _) => Volatile.Write(ref _stale, 1);
    }

    /// <summary>The node owning <paramref name="key"/>'s hash slot, or the one node of a deployment that is not a cluster.</summary>
    public string NodeOf(RedisKey key) => Cluster()?.GetBySlot(key)?.EndPoint is { } endpoint ? NameOf(endpoint) : _fallback;

    /// <summary>Why <paramref name="node"/>'s connection failed, while it is not connected; null when it is.</summary>
    public string? FailureOf(string node) => _failures.TryGetValue(node, out var reason) ? reason : null;

    /// <summary>The server behind <paramref name="node"/>, or null for the fallback node (any server answers for it).</summary>
    public EndPoint? EndPointOf(string node) => _endpoints.TryGetValue(node, out var endpoint) ? endpoint : null;

    /// <summary>Forgets a node's failure once it answered.</summary>
    public void Answered(string node) => _failures.TryRemove(node, out _);

    /// <summary><c>host:port</c>, as the flag names it.</summary>
    public string NameOf(EndPoint endpoint) => _names.GetOrAdd(endpoint, static (e, self) =>
    {
        var name = e switch
        {
            DnsEndPoint dns => $"{dns.Host}:{dns.Port}",
            _ => e.ToString() ?? "?",
        };
        self._endpoints.TryAdd(name, e);
        return name;
    }, this);

    /// <summary>A failed connection's cause in a few words: "connection refused", "connection closed by the server".</summary>
    public static string Describe(ConnectionFailureType type, Exception? error)
    {
        for (var e = error; e is not null; e = e.InnerException)
        {
            if (e is SocketException socket)
            {
                return socket.SocketErrorCode switch
                {
                    SocketError.ConnectionRefused => "connection refused",
                    SocketError.HostNotFound or SocketError.NoData => "host not found",
                    SocketError.TimedOut => "connect timed out",
                    SocketError.HostUnreachable or SocketError.NetworkUnreachable => "host unreachable",
                    _ => socket.Message,
                };
            }
            if (e.Message.Contains("Connection refused", StringComparison.OrdinalIgnoreCase))
            {
                return "connection refused";
            }
        }
        return type switch
        {
            ConnectionFailureType.SocketClosed => "connection closed by the server",
            ConnectionFailureType.UnableToConnect => "unable to connect",
            ConnectionFailureType.AuthenticationFailure => "authentication failed",
            ConnectionFailureType.ConnectionDisposed => "connection closed",
            ConnectionFailureType.UnableToResolvePhysicalConnection => "not connected",
            _ => type.ToString(),
        };
    }

    /// <summary>The slot map last read, read again (at most once a second) after the client saw it change.</summary>
    private ClusterConfiguration? Cluster()
    {
        var known = Volatile.Read(ref _cluster);
        var now = Stopwatch.GetTimestamp();
        if (Volatile.Read(ref _stale) == 0 || _connection is not { } connection || now < Volatile.Read(ref _nextRefresh))
        {
            return known;
        }
        Volatile.Write(ref _nextRefresh, now + RefreshEvery);
        foreach (var server in connection.GetServers())
        {
            if (server.IsConnected && server.ServerType == ServerType.Cluster && server.ClusterConfiguration is { } found)
            {
                Volatile.Write(ref _stale, 0);
                Volatile.Write(ref _cluster, found);
                return found;
            }
        }
        return known;
    }
}
