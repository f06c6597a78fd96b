using System.Buffers;
using RouteReplay.Cache;
using RouteReplay.Storage;

namespace RouteReplay.Tests.Support;

/// <summary>
/// A real store whose writes are accepted and dropped, so an engine reads only what a test put there beforehand and
/// never hits on values it wrote itself while the test ran.
/// </summary>
public sealed class ReadOnlyStore(IBlockStore inner) : IBlockStore
{
    /// <summary>Opens the store <paramref name="spec"/> names (a <c>--kv-store</c> value), read-only.</summary>
    public static ReadOnlyStore Open(string spec) =>
        new(BlockStores.Open(BlockStoreSpec.Parse(spec), new BlockStoreOptions(0, null, TimeSpan.FromSeconds(5))));

    public string Description => "read-only " + inner.Description;

    public string NodeOf(BlockKey key) => inner.NodeOf(key);

    public ValueTask PutAsync(BlockKey key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public ValueTask<bool> ContainsAsync(BlockKey key, CancellationToken cancellationToken) => inner.ContainsAsync(key, cancellationToken);

    public ValueTask ProbeAsync(string node, CancellationToken cancellationToken) => inner.ProbeAsync(node, cancellationToken);

    public ValueTask<IMemoryOwner<byte>?> GetAsync(BlockKey key, CancellationToken cancellationToken) => inner.GetAsync(key, cancellationToken);

    public ValueTask<long> ClearAsync(CancellationToken cancellationToken) => inner.ClearAsync(cancellationToken);

    public ValueTask DisposeAsync() => inner.DisposeAsync();
}
