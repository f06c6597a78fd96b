using System.Buffers;
using RouteReplay.Cache;
using RouteReplay.Storage;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Storage;

/// <summary>The store contract, against each real store: a folder, a Garnet server and a three-node Garnet cluster.</summary>
public abstract class BlockStoreContract
{
    protected abstract IBlockStore Store { get; }

    protected static BlockKey KeyOf(int i) => BlockKey.Chain(BlockKey.Root(99), [i, i + 1]);

    protected static byte[] Value(int i, int length = 70_000)
    {
        var value = new byte[length];
        new Random(i).NextBytes(value);
        return value;
    }

    protected static async Task<byte[]?> Read(IBlockStore store, BlockKey key)
    {
        using var value = await store.GetAsync(key, CancellationToken.None);
        return value?.Memory.ToArray();
    }

    [Fact]
    public async Task A_value_round_trips_and_an_absent_key_is_null()
    {
        await Store.PutAsync(KeyOf(1), Value(1), CancellationToken.None);
        Assert.Equal(Value(1), await Read(Store, KeyOf(1)));
        Assert.Null(await Read(Store, KeyOf(-1)));
    }

    [Fact]
    public async Task A_put_replaces_the_value()
    {
        await Store.PutAsync(KeyOf(2), Value(2), CancellationToken.None);
        await Store.PutAsync(KeyOf(2), Value(3, 1000), CancellationToken.None);
        Assert.Equal(Value(3, 1000), await Read(Store, KeyOf(2)));
    }

    [Fact]
    public async Task Many_concurrent_writers_and_readers_see_whole_values_only()
    {
        var keys = Enumerable.Range(100, 32).ToArray();
        var writers = keys.Select(i => Task.Run(async () =>
        {
            for (var round = 0; round < 3; round++)
            {
                await Store.PutAsync(KeyOf(i), Value(i + (round * 1000)), CancellationToken.None);
            }
        }));
        var readers = keys.Select(i => Task.Run(async () =>
        {
            for (var round = 0; round < 6; round++)
            {
                var value = await Read(Store, KeyOf(i));
                Assert.True(value is null || Enumerable.Range(0, 3).Any(r => value.AsSpan().SequenceEqual(Value(i + (r * 1000)))), "a torn or foreign value was read");
            }
        }));
        await Task.WhenAll(writers.Concat(readers));
        foreach (var i in keys)
        {
            Assert.Equal(Value(i + 2000), await Read(Store, KeyOf(i)));
        }
    }
}

public sealed class FileBlockStoreTests : BlockStoreContract, IAsyncLifetime
{
    private readonly string _folder = Directory.CreateTempSubdirectory("routereplay-store-").FullName;
    private FileBlockStore _store = null!;

    protected override IBlockStore Store => _store;

    public Task InitializeAsync()
    {
        _store = new FileBlockStore(_folder, 0);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _store.DisposeAsync();
        Directory.Delete(_folder, recursive: true);
    }

    [Fact]
    public async Task Values_are_renamed_into_place_leaving_no_temporary_file()
    {
        for (var i = 0; i < 20; i++)
        {
            await _store.PutAsync(KeyOf(i), Value(i, 100), CancellationToken.None);
        }
        var files = Directory.GetFiles(_folder, "*", SearchOption.AllDirectories);
        Assert.Equal(20, files.Length);
        Assert.All(files, f => Assert.EndsWith(FileBlockStore.Extension, f));
        Assert.True(File.Exists(_store.PathOf(KeyOf(3))));
    }

    [Fact]
    public async Task Two_stores_on_one_folder_share_values()
    {
        await using var other = new FileBlockStore(_folder, 0);
        await _store.PutAsync(KeyOf(7), Value(7), CancellationToken.None);
        Assert.Equal(Value(7), await Read(other, KeyOf(7)));
    }

    [Fact]
    public async Task The_size_cap_evicts_the_least_recently_used_values()
    {
        var folder = Directory.CreateTempSubdirectory("routereplay-capped-").FullName;
        try
        {
            await using var store = new FileBlockStore(folder, 10 * 10_000);
            for (var i = 0; i < 8; i++)
            {
                await store.PutAsync(KeyOf(i), Value(i, 10_000), CancellationToken.None);
                File.SetLastWriteTimeUtc(store.PathOf(KeyOf(i)), DateTime.UtcNow.AddMinutes(i - 60));
            }
            Assert.NotNull(await Read(store, KeyOf(0)));
            for (var i = 8; i < 14; i++)
            {
                await store.PutAsync(KeyOf(i), Value(i, 10_000), CancellationToken.None);
            }
            // 14 values of which the cap holds 10: an eviction pass leaves 9, but one may end before the last write,
            // which then brings the folder to exactly the cap without passing it.
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (Directory.GetFiles(folder, "*" + FileBlockStore.Extension, SearchOption.AllDirectories).Length > 10 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(20);
            }
            Assert.True(Directory.GetFiles(folder, "*" + FileBlockStore.Extension, SearchOption.AllDirectories).Length <= 10);
            Assert.True(store.Evictions >= 4);
            Assert.NotNull(await Read(store, KeyOf(0)));
            Assert.Null(await Read(store, KeyOf(1)));
            Assert.NotNull(await Read(store, KeyOf(13)));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}

public sealed class RedisBlockStoreTests(GarnetServerFixture server) : BlockStoreContract, IClassFixture<GarnetServerFixture>, IAsyncLifetime
{
    private RedisBlockStore _store = null!;

    protected override IBlockStore Store => _store;

    public Task InitializeAsync()
    {
        _store = (RedisBlockStore)BlockStores.Open(BlockStoreSpec.Parse(server.StoreSpec), new BlockStoreOptions(0, TimeSpan.FromMinutes(5), TimeSpan.FromSeconds(2)));
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _store.DisposeAsync();

    [Fact]
    public async Task Values_are_set_with_the_time_to_live()
    {
        await _store.PutAsync(KeyOf(9), Value(9, 10), CancellationToken.None);
        using var connection = server.Connect();
        var ttl = await connection.GetDatabase().KeyTimeToLiveAsync(RedisBlockStore.KeyOf(KeyOf(9)));
        Assert.NotNull(ttl);
        Assert.InRange(ttl.Value.TotalSeconds, 200, 300);
    }
}

public sealed class RedisClusterBlockStoreTests(GarnetClusterFixture cluster) : BlockStoreContract, IClassFixture<GarnetClusterFixture>, IAsyncLifetime
{
    private RedisBlockStore _store = null!;

    protected override IBlockStore Store => _store;

    public Task InitializeAsync()
    {
        _store = (RedisBlockStore)BlockStores.Open(BlockStoreSpec.Parse(cluster.StoreSpec), new BlockStoreOptions(0, TimeSpan.FromMinutes(5), TimeSpan.FromSeconds(2)));
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _store.DisposeAsync();

    [Fact]
    public async Task Keys_spread_over_every_node_of_the_cluster()
    {
        for (var i = 500; i < 530; i++)
        {
            await _store.PutAsync(KeyOf(i), Value(i, 100), CancellationToken.None);
        }
        using var connection = cluster.Connect();
        foreach (var port in cluster.Ports)
        {
            Assert.True(await connection.GetServer("127.0.0.1", port).DatabaseSizeAsync() > 0, $"node {port} holds no key");
        }
        for (var i = 500; i < 530; i++)
        {
            Assert.Equal(Value(i, 100), await Read(_store, KeyOf(i)));
        }
    }
}

public sealed class UnreachableRedisStoreTests
{
    [Fact]
    public async Task A_store_that_is_down_fails_fast_instead_of_hanging()
    {
        var port = GarnetServerFixture.FreePort();
        var started = DateTime.UtcNow;
        await using var store = BlockStores.Open(BlockStoreSpec.Parse($"redis://127.0.0.1:{port}"), new BlockStoreOptions(0, null, TimeSpan.FromMilliseconds(200)));
        await Assert.ThrowsAnyAsync<Exception>(async () => await store.GetAsync(BlockKey.Root(1), CancellationToken.None));
        await Assert.ThrowsAnyAsync<Exception>(async () => await store.PutAsync(BlockKey.Root(1), new byte[10], CancellationToken.None));
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(10));
    }

    [Theory]
    [InlineData("redis://", "empty HOST:PORT")]
    [InlineData("redis://host:0", "port in 1..65535")]
    [InlineData("redis://host:x", "port in 1..65535")]
    [InlineData("redis://host", "'host' has no port: write redis://HOST:PORT")]
    [InlineData("redis://a:7000,b", "'b' has no port")]
    [InlineData("redis://[::1]", "has no port")]
    [InlineData("redis://::1:6379", "IPv6 address in brackets")]
    [InlineData("file:", "needs a folder")]
    [InlineData("s3://bucket", "must be file:DIR or redis://")]
    public void A_malformed_store_spec_names_the_flag(string spec, string message)
    {
        var error = Assert.Throws<ArgumentException>(() => BlockStoreSpec.Parse(spec));
        Assert.StartsWith("--kv-store", error.Message, StringComparison.Ordinal);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Store_specs_parse_folders_and_endpoint_lists()
    {
        Assert.Equal(new FileStoreSpec("/data/kv"), BlockStoreSpec.Parse("file:/data/kv"));
        var redis = Assert.IsType<RedisStoreSpec>(BlockStoreSpec.Parse("redis://10.0.0.1:7000, node-b:7001,[::1]:6379"));
        Assert.Equal(["10.0.0.1:7000", "node-b:7001", "::1:6379"], redis.Endpoints.Select(e => $"{e.Host}:{e.Port}"));
    }
}
