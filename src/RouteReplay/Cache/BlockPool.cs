namespace RouteReplay.Cache;

/// <summary>
/// The device KV block allocator with the prefix cache. A block is either used (ref count &gt; 0, held by one or
/// more sequences) or free (ref count 0, in the free queue); a free block may still be cached, its payload and key
/// intact, until it is reused. Every operation is O(1) and allocates nothing. Not thread-safe; the step loop owns it.
/// </summary>
/// <remarks>
/// <para>Eviction order: free blocks are reused from the head of the free queue. <see cref="Release"/> puts a block
/// that holds no key at the head (it has nothing worth keeping, so it is reused before any cached block) and a cached
/// block at the tail, so cached blocks are evicted least recently freed first, and only once no uncached free block is
/// left. A cached block is evicted (its key dropped) only when it is reused.
/// Callers release a sequence's blocks in reverse table order (<see cref="ReleaseSequence"/>), so a prefix's first
/// blocks, the most shared, are evicted last.</para>
/// <para>Payload: every channel's rows of a block are reset to the unset sentinel when the block is allocated, so a
/// block's rows are either written by a step of its current owner or unset. A prefix hit reuses the rows as they are.</para>
/// </remarks>
public sealed class BlockPool
{
    private readonly BlockChannel[] _channels;
    private readonly int[] _refCounts;
    private readonly bool[] _committed;
    private readonly FreeBlockQueue _freeQueue;
    private readonly PrefixIndex _index;

    /// <param name="numBlocks">Blocks in the pool.</param>
    /// <param name="blockSize">Tokens per block.</param>
    /// <param name="enablePrefixCaching">When false, <see cref="Commit"/> indexes nothing and <see cref="TryHit"/> never hits.</param>
    /// <param name="channels">The auxiliary channels, each sized for exactly this pool's blocks.</param>
    /// <exception cref="ArgumentException">A channel's shape differs from the pool's or two channels share a name.</exception>
    public BlockPool(int numBlocks, int blockSize, bool enablePrefixCaching, IReadOnlyList<BlockChannel> channels)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numBlocks);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockSize);
        ArgumentOutOfRangeException.ThrowIfGreaterThan((long)numBlocks * blockSize, Array.MaxLength, nameof(numBlocks));
        ArgumentNullException.ThrowIfNull(channels);
        _channels = ValidatedChannels(channels, numBlocks, blockSize);
        Channels = Array.AsReadOnly(_channels);
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        PrefixCachingEnabled = enablePrefixCaching;
        _refCounts = new int[numBlocks];
        _committed = new bool[numBlocks];
        _freeQueue = new FreeBlockQueue(numBlocks);
        _index = new PrefixIndex(numBlocks, blockSize);
    }

    public int NumBlocks { get; }

    /// <summary>Tokens per block.</summary>
    public int BlockSize { get; }

    public bool PrefixCachingEnabled { get; }

    /// <summary>The auxiliary channels whose rows belong to the blocks, in registration order.</summary>
    public IReadOnlyList<BlockChannel> Channels { get; }

    /// <summary>Blocks with ref count 0, cached or not; every one is allocatable.</summary>
    public int FreeBlockCount => _freeQueue.Count;

    /// <summary>Blocks with ref count &gt; 0. Always <c>NumBlocks - FreeBlockCount</c>.</summary>
    public int UsedBlockCount => NumBlocks - _freeQueue.Count;

    /// <summary>Blocks currently holding a key in the prefix index, used or free.</summary>
    public int CachedBlockCount => _index.Count;

    /// <summary>Blocks returned by successful <see cref="TryHit"/> calls.</summary>
    public long HitBlocks { get; private set; }

    /// <summary>Cached blocks whose key was dropped because the block was reused for other tokens.</summary>
    public long Evictions { get; private set; }

    /// <summary>Lookups whose key was indexed but whose stored parent key or token ids differed: counted as misses.</summary>
    public long HashCollisions { get; private set; }

    /// <summary>Told about every cached block just before it is evicted, while its payload is still intact.</summary>
    public IBlockEvictionSink? EvictionSink { get; set; }

    public bool CanAllocate(int count) => count <= _freeQueue.Count;

    /// <summary>
    /// Takes the least recently freed block, evicting its key if it is cached, resets its rows in every channel to the
    /// unset sentinel and returns it with ref count 1.
    /// </summary>
    /// <exception cref="InvalidOperationException">No block is free.</exception>
    public int Allocate()
    {
        var block = _freeQueue.PopHead();
        if (_index.IsIndexed(block))
        {
            EvictionSink?.OnEvict(block, _index.KeyOf(block), _index.ParentOf(block), _index.TokenIdsOf(block));
            _index.Remove(block);
            Evictions++;
        }
        _committed[block] = false;
        _refCounts[block] = 1;
        foreach (var channel in _channels)
        {
            channel.ResetBlock(block);
        }
        return block;
    }

    /// <summary>
    /// Drops one reference to <paramref name="block"/>. At ref count 0 the block joins the tail of the free queue,
    /// keeping its key and payload if it is cached, so that a later <see cref="TryHit"/> can take it back.
    /// </summary>
    /// <exception cref="InvalidOperationException">The block is already free (a double free).</exception>
    public void Release(int block)
    {
        CheckBlock(block);
        if (_refCounts[block] == 0)
        {
            throw new InvalidOperationException($"block {block} is already free");
        }
        if (--_refCounts[block] == 0)
        {
            if (_index.IsIndexed(block))
            {
                _freeQueue.PushTail(block);
            }
            else
            {
                _freeQueue.PushHead(block);
            }
        }
    }

    /// <summary>
    /// Takes one more reference to a used block, for a second holder of the same payload: a choice sharing its
    /// request's prompt blocks, or a transfer holding blocks until the peer has them. Release it like any reference.
    /// </summary>
    /// <exception cref="InvalidOperationException">The block is free (only a held block's payload can be shared).</exception>
    public void Share(int block)
    {
        CheckBlock(block);
        if (_refCounts[block] == 0)
        {
            throw new InvalidOperationException($"block {block} is free and cannot be shared");
        }
        _refCounts[block]++;
    }

    /// <summary>Releases every block of a sequence's table in reverse order, so its first blocks are evicted last.</summary>
    public void ReleaseSequence(ReadOnlySpan<int> blockTable)
    {
        for (var i = blockTable.Length - 1; i >= 0; i--)
        {
            Release(blockTable[i]);
        }
    }

    /// <summary>
    /// Looks up a full block of a prompt's prefix. When prefix caching is on and <paramref name="key"/> is indexed, the
    /// block's stored parent key and token ids must equal <paramref name="parent"/> and <paramref name="tokenIds"/>
    /// (a mismatch is a miss and counts a <see cref="HashCollisions"/>). On a hit the caller holds a new reference to
    /// the block, which leaves the free queue if it was free; its payload is already there. On a miss
    /// <paramref name="block"/> is -1.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="tokenIds"/> is not exactly one block long.</exception>
    public bool TryHit(BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds, out int block)
    {
        CheckFullBlock(tokenIds);
        if (!PrefixCachingEnabled || !_index.TryFind(key, out block))
        {
            block = -1;
            return false;
        }
        if (!_index.Matches(block, parent, tokenIds))
        {
            HashCollisions++;
            block = -1;
            return false;
        }
        if (_refCounts[block]++ == 0)
        {
            _freeQueue.Unlink(block);
        }
        HitBlocks++;
        return true;
    }

    /// <summary>
    /// Marks a full, computed block as done and indexes it under <paramref name="key"/> with its parent key and a
    /// copy of its token ids. Nothing is indexed when prefix caching is off or another block already holds the key;
    /// the block then stays uncached. A block is committed at most once per allocation.
    /// </summary>
    /// <exception cref="InvalidOperationException">The block is free or was already committed.</exception>
    /// <exception cref="ArgumentException"><paramref name="tokenIds"/> is not exactly one block long.</exception>
    public void Commit(int block, BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds)
    {
        CheckBlock(block);
        CheckFullBlock(tokenIds);
        if (_refCounts[block] == 0)
        {
            throw new InvalidOperationException($"block {block} is free and cannot be committed");
        }
        if (_committed[block])
        {
            throw new InvalidOperationException($"block {block} is already committed");
        }
        _committed[block] = true;
        if (PrefixCachingEnabled && !_index.Contains(key))
        {
            _index.Add(block, key, parent, tokenIds);
        }
    }

    /// <summary>True when some block is indexed under <paramref name="key"/> (not verified: for deduplication only).</summary>
    public bool Holds(BlockKey key) => _index.Contains(key);

    public int RefCount(int block)
    {
        CheckBlock(block);
        return _refCounts[block];
    }

    /// <summary>True when the block holds a key in the prefix index.</summary>
    public bool IsCached(int block)
    {
        CheckBlock(block);
        return _index.IsIndexed(block);
    }

    /// <summary>The block's key while it is cached, else null.</summary>
    public BlockKey? KeyOf(int block) => IsCached(block) ? _index.KeyOf(block) : null;

    /// <summary>
    /// Drops every key from the prefix index (flush, or new weights). Used blocks keep their data and references;
    /// free blocks become plain free blocks. Blocks committed before stay committed until they are reallocated.
    /// </summary>
    public void ResetPrefixCache() => _index.Clear();

    private static BlockChannel[] ValidatedChannels(IReadOnlyList<BlockChannel> channels, int numBlocks, int blockSize)
    {
        var validated = new BlockChannel[channels.Count];
        for (var i = 0; i < validated.Length; i++)
        {
            var channel = channels[i] ?? throw new ArgumentException($"channel {i} is null", nameof(channels));
            if (channel.NumBlocks != numBlocks || channel.BlockSize != blockSize)
            {
                throw new ArgumentException(
                    $"channel '{channel.Name}' has {channel.NumBlocks} blocks of {channel.BlockSize}, the pool {numBlocks} of {blockSize}",
                    nameof(channels));
            }
            for (var j = 0; j < i; j++)
            {
                if (validated[j].Name == channel.Name)
                {
                    throw new ArgumentException($"two channels are named '{channel.Name}'", nameof(channels));
                }
            }
            validated[i] = channel;
        }
        return validated;
    }

    private void CheckBlock(int block) =>
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)block, (uint)NumBlocks, nameof(block));

    private void CheckFullBlock(ReadOnlySpan<int> tokenIds)
    {
        if (tokenIds.Length != BlockSize)
        {
            throw new ArgumentException($"a block holds {BlockSize} token ids, not {tokenIds.Length}", nameof(tokenIds));
        }
    }
}
