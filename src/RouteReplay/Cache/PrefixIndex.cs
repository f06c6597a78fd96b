namespace RouteReplay.Cache;

/// <summary>
/// The prefix cache's index: block key to block id, with each indexed block's parent key and a copy of its token ids
/// (in one preallocated <c>int[numBlocks * blockSize]</c>) so that a lookup verifies the match instead of trusting the
/// hash. A block holds at most one key, so the dictionary, sized for every block at construction, never grows.
/// </summary>
internal sealed class PrefixIndex
{
    private readonly Dictionary<BlockKey, int> _blocks;
    private readonly BlockKey[] _keys;
    private readonly BlockKey[] _parents;
    private readonly bool[] _indexed;
    private readonly int[] _tokenIds;
    private readonly int _blockSize;

    public PrefixIndex(int numBlocks, int blockSize)
    {
        _blocks = new Dictionary<BlockKey, int>(numBlocks);
        _keys = new BlockKey[numBlocks];
        _parents = new BlockKey[numBlocks];
        _indexed = new bool[numBlocks];
        _tokenIds = new int[numBlocks * blockSize];
        _blockSize = blockSize;
    }

    public int Count => _blocks.Count;

    public bool Contains(BlockKey key) => _blocks.ContainsKey(key);

    public bool IsIndexed(int block) => _indexed[block];

    public BlockKey KeyOf(int block) => _keys[block];

    /// <summary>Finds the block indexed under <paramref name="key"/>, whatever its stored parent and tokens.</summary>
    public bool TryFind(BlockKey key, out int block) => _blocks.TryGetValue(key, out block);

    /// <summary>True when <paramref name="block"/>'s stored parent key and token ids equal the given ones.</summary>
    public bool Matches(int block, BlockKey parent, ReadOnlySpan<int> tokenIds) =>
        _parents[block] == parent && TokenIdsOf(block).SequenceEqual(tokenIds);

    /// <summary>Indexes <paramref name="block"/> under <paramref name="key"/>; the key must be absent.</summary>
    public void Add(int block, BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds)
    {
        _blocks.Add(key, block);
        _keys[block] = key;
        _parents[block] = parent;
        _indexed[block] = true;
        tokenIds.CopyTo(_tokenIds.AsSpan(block * _blockSize, _blockSize));
    }

    /// <summary>Drops <paramref name="block"/>'s key; its stored parent and tokens are left to be overwritten.</summary>
    public void Remove(int block)
    {
        _blocks.Remove(_keys[block]);
        _indexed[block] = false;
    }

    public void Clear()
    {
        _blocks.Clear();
        Array.Clear(_indexed);
    }

    public BlockKey ParentOf(int block) => _parents[block];

    public ReadOnlySpan<int> TokenIdsOf(int block) => _tokenIds.AsSpan(block * _blockSize, _blockSize);
}
