using RouteReplay.Cache;

namespace RouteReplay.Tests.Cache;

/// <summary>
/// A deliberately naive reference for <see cref="BlockPool"/>: a list for the free queue, a dictionary for the index,
/// a copy of each indexed block's parent and tokens. The property test runs both and demands the same answers.
/// </summary>
internal sealed class BlockPoolModel(int numBlocks, bool prefixCaching)
{
    private readonly List<int> _freeQueue = [.. Enumerable.Range(0, numBlocks)];
    private readonly int[] _refCounts = new int[numBlocks];
    private readonly Dictionary<BlockKey, int> _index = [];
    private readonly Dictionary<int, (BlockKey Key, BlockKey Parent, int[] Tokens)> _stored = [];

    public int FreeCount => _freeQueue.Count;

    public long HitBlocks { get; private set; }

    public long Evictions { get; private set; }

    public long HashCollisions { get; private set; }

    public int CachedCount => _index.Count;

    public int RefCount(int block) => _refCounts[block];

    public BlockKey? KeyOf(int block) => _stored.TryGetValue(block, out var stored) ? stored.Key : null;

    public int Allocate()
    {
        var block = _freeQueue[0];
        _freeQueue.RemoveAt(0);
        if (_stored.Remove(block, out var stored))
        {
            _index.Remove(stored.Key);
            Evictions++;
        }
        _refCounts[block] = 1;
        return block;
    }

    public void Release(int block)
    {
        if (--_refCounts[block] == 0)
        {
            if (_stored.ContainsKey(block))
            {
                _freeQueue.Add(block);
            }
            else
            {
                _freeQueue.Insert(0, block);
            }
        }
    }

    public int? TryHit(BlockKey key, BlockKey parent, int[] tokens)
    {
        if (!prefixCaching || !_index.TryGetValue(key, out var block))
        {
            return null;
        }
        var stored = _stored[block];
        if (stored.Parent != parent || !stored.Tokens.SequenceEqual(tokens))
        {
            HashCollisions++;
            return null;
        }
        if (_refCounts[block]++ == 0)
        {
            _freeQueue.Remove(block);
        }
        HitBlocks++;
        return block;
    }

    public void Commit(int block, BlockKey key, BlockKey parent, int[] tokens)
    {
        if (prefixCaching && !_index.ContainsKey(key))
        {
            _index[key] = block;
            _stored[block] = (key, parent, tokens.ToArray());
        }
    }

    public void ResetPrefixCache()
    {
        _index.Clear();
        _stored.Clear();
    }
}
