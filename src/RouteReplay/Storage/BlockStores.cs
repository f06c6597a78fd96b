namespace RouteReplay.Storage;

/// <summary>Settings every store takes: the file store's size cap, Redis values' time to live, and the I/O timeout.</summary>
/// <param name="MaxBytes">File store size cap; 0 for none.</param>
/// <param name="Ttl">Redis values' time to live; null for none.</param>
/// <param name="Timeout">Connect and command timeout.</param>
public sealed record BlockStoreOptions(long MaxBytes, TimeSpan? Ttl, TimeSpan Timeout);

/// <summary>Opens the store a <see cref="BlockStoreSpec"/> names.</summary>
public static class BlockStores
{
    public static IBlockStore Open(BlockStoreSpec spec, BlockStoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(options);
        return spec switch
        {
            FileStoreSpec file => new FileBlockStore(file.Directory, options.MaxBytes),
            RedisStoreSpec redis => new RedisBlockStore(redis.Endpoints, options.Ttl, options.Timeout),
            _ => throw new ArgumentException($"unknown store {spec}", nameof(spec)),
        };
    }
}
