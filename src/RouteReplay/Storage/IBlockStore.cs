using System.Buffers;
using RouteReplay.Cache;

namespace RouteReplay.Storage;

/// <summary>
/// A persistent key-value store of encoded block values (<see cref="PayloadCodec"/>), shared by processes and
/// restarts. Stores hold bytes only: every value is verified by the reader, so a store may lose, truncate or corrupt
/// values without harm. Methods are safe to call from any thread; a fault (unreachable, timed out, I/O error) throws.
/// </summary>
public interface IBlockStore : IAsyncDisposable
{
    /// <summary>What the store is, for logs and errors (e.g. <c>file:/data/kv</c>).</summary>
    string Description { get; }

    /// <summary>Stores <paramref name="value"/> under <paramref name="key"/>, replacing any value there.</summary>
    ValueTask PutAsync(BlockKey key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken);

    /// <summary>The value under <paramref name="key"/>, or null when there is none. The caller disposes it.</summary>
    ValueTask<IMemoryOwner<byte>?> GetAsync(BlockKey key, CancellationToken cancellationToken);

    /// <summary>Deletes every value this kind of store wrote there (any fingerprint); returns how many.</summary>
    ValueTask<long> ClearAsync(CancellationToken cancellationToken);
}
