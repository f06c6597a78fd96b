namespace RouteReplay.Cache;

/// <summary>Receives cached blocks as a pool evicts them, e.g. to demote their payload to a lower tier.</summary>
public interface IBlockEvictionSink
{
    /// <summary>Called before <paramref name="block"/> is reset for reuse; its payload and identity are still intact.</summary>
    void OnEvict(int block, BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds);
}
