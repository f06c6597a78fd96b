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
public sealed class RedisBlockStore : IBlockStore
{
    /// <summary>The prefix of every key this store writes.</summary>
    public const string KeyPrefix = "routereplay:kv:";

    private readonly ConnectionMultiplexer _connection;
    private readonly TimeSpan? _ttl;

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
        _connection = ConnectionMultiplexer.Connect(options);
        _ttl = ttl;
        Description = "redis://" + string.Join(',', endpoints.Select(e => $"{e.Host}:{e.Port}"));
    }

    public string Description { get; }

    public static RedisKey KeyOf(BlockKey key) => KeyPrefix + key.ToString();

    public async ValueTask PutAsync(BlockKey key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken)
    {
        var database = _connection.GetDatabase();
        await database.StringSetAsync(KeyOf(key), value, _ttl, When.Always).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask<IMemoryOwner<byte>?> GetAsync(BlockKey key, CancellationToken cancellationToken)
    {
        var database = _connection.GetDatabase();
        return await database.StringGetLeaseAsync(KeyOf(key)).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

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

    public ValueTask DisposeAsync() => _connection.DisposeAsync();
}
