using System.Buffers;
using System.Net;
using RouteReplay.Cache;
using StackExchange.Redis;

namespace RouteReplay.Storage;

/// <summary>
/// Block values in a Redis-protocol server or a Redis Cluster (StackExchange.Redis finds out which, and routes each
/// key to the node owning its hash slot), under <c>routereplay:kv:HEX</c>, each set with a time to live. Connecting
/// never fails: an unreachable server makes operations throw until it is back (the client reconnects by itself).
/// </summary>
/// <remarks>
/// Each node is its own <see cref="IBlockStore.NodeOf"/> node. An operation on a node that is not connected fails at
/// once, naming the node and why (<c>10.0.0.5:7000: connection refused</c>), instead of waiting for the timeout.
/// </remarks>
public sealed class RedisBlockStore : IBlockStore
{
    /// <summary>The prefix of every key this store writes.</summary>
    public const string KeyPrefix = "routereplay:kv:";

    private readonly ConnectionMultiplexer _connection;
    private readonly RedisNodes _nodes;
    private readonly TimeSpan? _ttl;
    private readonly TimeSpan _timeout;

    /// <param name="endpoints">host:port of one server, or of any nodes of a cluster.</param>
    /// <param name="ttl">The values' time to live; null for none.</param>
    /// <param name="timeout">Connect and command timeout.</param>
    public RedisBlockStore(IReadOnlyList<DnsEndPoint> endpoints, TimeSpan? ttl, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentOutOfRangeException.ThrowIfZero(endpoints.Count, nameof(endpoints));
        var milliseconds = (int)Math.Clamp(timeout.TotalMilliseconds, 1, int.MaxValue);
        var options = new ConfigurationOptions
        {
            AbortOnConnectFail = false,
            BacklogPolicy = BacklogPolicy.FailFast,
            ConnectTimeout = milliseconds,
            SyncTimeout = milliseconds,
            AsyncTimeout = milliseconds,
            ConnectRetry = 1,
            ReconnectRetryPolicy = new ExponentialRetry(250, 10_000),
            ClientName = "routereplay",
        };
        foreach (var endpoint in endpoints)
        {
            options.EndPoints.Add(endpoint.Host, endpoint.Port);
        }
        Description = "redis://" + string.Join(',', endpoints.Select(e => $"{e.Host}:{e.Port}"));
        _nodes = new RedisNodes(endpoints, Description);
        _nodes.Watch(options);
        _connection = ConnectionMultiplexer.Connect(options);
        _nodes.Watch(_connection);
        _ttl = ttl;
        _timeout = timeout;
    }

    public string Description { get; }

    public static RedisKey KeyOf(BlockKey key) => KeyPrefix + key.ToString();

    public string NodeOf(BlockKey key) => _nodes.NodeOf(KeyOf(key));

    public ValueTask PutAsync(BlockKey key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken) =>
        new(Run(key, (database, k) => database.StringSetAsync(k, value, _ttl, When.Always), cancellationToken));

    /// <summary>With a time to live, <c>EXPIRE</c> (true when the key exists, whose time to live starts again); else <c>EXISTS</c>.</summary>
    public async ValueTask<bool> ContainsAsync(BlockKey key, CancellationToken cancellationToken) =>
        await Run(key, (database, k) => _ttl is { } ttl ? database.KeyExpireAsync(k, ttl) : database.KeyExistsAsync(k), cancellationToken).ConfigureAwait(false);

    public async ValueTask<IMemoryOwner<byte>?> GetAsync(BlockKey key, CancellationToken cancellationToken) =>
        await Run(key, (database, k) => database.StringGetLeaseAsync(k), cancellationToken).ConfigureAwait(false);

    /// <summary>Deletes every <see cref="KeyPrefix"/> key on every primary (each cluster node holds its own slots).</summary>
    public async ValueTask<long> ClearAsync(CancellationToken cancellationToken)
    {
        var database = _connection.GetDatabase();
        long deleted = 0;
        foreach (var server in _connection.GetServers())
        {
            if (!server.IsConnected || server.IsReplica)
            {
                continue;
            }
            await foreach (var key in server.KeysAsync(pattern: KeyPrefix + "*", pageSize: 1000).WithCancellation(cancellationToken).ConfigureAwait(false))
            {
                if (await database.KeyDeleteAsync(key).ConfigureAwait(false))
                {
                    deleted++;
                }
            }
        }
        return deleted;
    }

    /// <summary>A <c>PING</c> to the node (to any server for a deployment whose nodes are not known yet).</summary>
    public async ValueTask ProbeAsync(string node, CancellationToken cancellationToken)
    {
        try
        {
            var ping = _nodes.EndPointOf(node) is { } endpoint ? _connection.GetServer(endpoint).PingAsync() : _connection.GetDatabase().PingAsync();
            await ping.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or RedisTimeoutException)
        {
            throw Fault(node, e);
        }
        _nodes.Answered(node);
    }

    public ValueTask DisposeAsync() => _connection.DisposeAsync();

    /// <summary>Runs one command on the key's node; fails at once, naming the node and why, while the node is not connected.</summary>
    private async Task<T> Run<T>(BlockKey key, Func<IDatabase, RedisKey, Task<T>> command, CancellationToken cancellationToken)
    {
        var redisKey = KeyOf(key);
        var node = _nodes.NodeOf(redisKey);
        if (_nodes.FailureOf(node) is { } failure)
        {
            throw new IOException($"{node}: {failure}");
        }
        try
        {
            return await command(_connection.GetDatabase(), redisKey).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or RedisTimeoutException)
        {
            throw Fault(node, e);
        }
    }

    private Exception Fault(string node, Exception error) => error switch
    {
        RedisConnectionException connection => new IOException($"{node}: {RedisNodes.Describe(connection.FailureType, connection)}", error),
        RedisTimeoutException => new TimeoutException($"{node}: no answer within {_timeout.TotalMilliseconds:F0} ms", error),
        _ => new IOException($"{node}: {error.Message}", error),
    };
}
