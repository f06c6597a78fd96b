using BenchmarkDotNet.Attributes;
using RouteReplay.Cache;

namespace RouteReplay.Bench;

/// <summary>The block pool's hot operations: allocate/release and a verified prefix lookup per block.</summary>
[MemoryDiagnoser]
public class BlockPoolBenchmarks
{
    private const int BlockSize = 16;
    private readonly int[] _tokens = Enumerable.Range(1000, BlockSize).ToArray();
    private BlockPool _pool = null!;
    private BlockKey _parent;
    private BlockKey _key;

    [GlobalSetup]
    public void Setup()
    {
        _pool = new BlockPool(4096, BlockSize, enablePrefixCaching: true, []);
        _parent = BlockKey.Root(42);
        _key = BlockKey.Chain(_parent, _tokens);
        var block = _pool.Allocate();
        _pool.Commit(block, _key, _parent, _tokens);
        _pool.Release(block);
    }

    [Benchmark]
    public void AllocateThenRelease()
    {
        var block = _pool.Allocate();
        _pool.Release(block);
    }

    [Benchmark]
    public bool PrefixLookupPerBlock()
    {
        var key = BlockKey.Chain(_parent, _tokens);
        var hit = _pool.TryHit(key, _parent, _tokens, out var block);
        if (hit)
        {
            _pool.Release(block);
        }
        return hit;
    }
}
