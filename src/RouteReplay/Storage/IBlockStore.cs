using System.Buffers;
using RouteReplay.Cache;

namespace RouteReplay.Storage;

/// <summary>
/// A persistent key-value store of encoded block values (<see cref="PayloadCodec"/>), shared by processes and
/// restarts. Stores hold bytes only: every value is verified by the reader, so a store may lose, truncate or corrupt
/// values without harm. Methods are safe to call from any thread; a fault (unreachable, timed out, I/O error) throws.
/// </summary>
/// <remarks>
/// A store is made of one or more <b>nodes</b> that fail independently (the primaries of a Redis Cluster, each owning
/// its hash slots; a single server or folder is one node). Callers track health per node (<see cref="NodeOf"/>), so
/// values on the nodes that answer stay usable while another is down.
/// </remarks>
public interface IBlockStore : IAsyncDisposable
{
    /// <summary>What the store is, for logs and errors (e.g. <c>file:/data/kv</c>).</summary>
    string Description { get; }

    /// <summary>The node that holds <paramref name="key"/>'s value (e.g. <c>10.0.0.5:7000</c>), as far as the store knows now; fast, no I/O.</summary>
    string NodeOf(BlockKey key);

    /// <summary>Stores <paramref name="value"/> under <paramref name="key"/>, replacing any value there.</summary>
    ValueTask PutAsync(BlockKey key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken);

    /// <summary>
    /// True when the store holds a value under <paramref name="key"/> (not verified); a value found counts as used, as
    /// a read does (its time to live or age is refreshed), so a writer may skip writing it again.
    /// </summary>
    ValueTask<bool> ContainsAsync(BlockKey key, CancellationToken cancellationToken);

    /// <summary>The value under <paramref name="key"/>, or null when there is none. The caller disposes it.</summary>
    ValueTask<IMemoryOwner<byte>?> GetAsync(BlockKey key, CancellationToken cancellationToken);

    /// <summary>Deletes every value this kind of store wrote there (any fingerprint); returns how many.</summary>
    ValueTask<long> ClearAsync(CancellationToken cancellationToken);

    /// <summary>Returns when <paramref name="node"/> (a <see cref="NodeOf"/> result) answers; throws when it does not.</summary>
    ValueTask ProbeAsync(string node, CancellationToken cancellationToken);
}
