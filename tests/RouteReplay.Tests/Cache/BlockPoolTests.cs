using RouteReplay.Cache;
using RouteReplay.Routing;

using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Cache;

public sealed class BlockPoolTests
{
    private const int BlockSize = 2;

    private static readonly RoutingFormat Format = new([0, 1], 2, 16);
    private static readonly BlockKey Root = BlockKey.Root(42);

    [Fact]
    public void A_new_pool_has_every_block_free_and_nothing_cached()
    {
        var pool = NewPool(4);
        Assert.Equal(4, pool.FreeBlockCount);
        Assert.Equal(0, pool.UsedBlockCount);
        Assert.Equal(0, pool.CachedBlockCount);
        Assert.True(pool.CanAllocate(4));
        Assert.False(pool.CanAllocate(5));
    }

    [Fact]
    public void Blocks_are_allocated_in_id_order_then_uncached_ones_reused_most_recently_freed_first()
    {
        var pool = NewPool(4);
        Assert.Equal([0, 1, 2, 3], AllocateMany(pool, 4));

        pool.Release(2);
        pool.Release(0);
        pool.Release(3);

        Assert.Equal([3, 0, 2], AllocateMany(pool, 3));
    }

    [Fact]
    public void Uncached_free_blocks_are_reused_before_any_cached_block_is_evicted()
    {
        var pool = NewPool(4);
        var (cached, key) = AllocateAndCommit(pool, [1, 2]);
        var plain = AllocateMany(pool, 3);
        pool.Release(cached);
        pool.ReleaseSequence(plain);

        Assert.Equal(plain.Order(), AllocateMany(pool, 3).Order());
        Assert.True(pool.IsCached(cached));
        Assert.Equal(0, pool.Evictions);
        Assert.Equal(cached, pool.Allocate());
        Assert.False(pool.TryHit(key, Root, [1, 2], out _));
        Assert.Equal(1, pool.Evictions);
    }

    [Fact]
    public void A_cached_block_freed_later_survives_longer()
    {
        var pool = NewPool(3);
        var (early, earlyKey) = AllocateAndCommit(pool, [1, 2]);
        var (late, lateKey) = AllocateAndCommit(pool, [3, 4]);
        pool.Release(early);
        pool.Release(late);

        Assert.Equal(2, pool.Allocate());
        Assert.Equal(early, pool.Allocate());

        Assert.False(pool.IsCached(early));
        Assert.False(pool.TryHit(earlyKey, Root, [1, 2], out _));
        Assert.True(pool.IsCached(late));
        Assert.Equal(lateKey, pool.KeyOf(late));
        Assert.Equal(1, pool.Evictions);
    }

    [Fact]
    public void Releasing_a_cached_sequence_frees_its_blocks_in_reverse_table_order_so_its_first_blocks_are_evicted_last()
    {
        var pool = NewPool(3);
        int[] blocks = [AllocateAndCommit(pool, [1, 2]).Block, AllocateAndCommit(pool, [3, 4]).Block, AllocateAndCommit(pool, [5, 6]).Block];
        pool.ReleaseSequence(blocks);
        Assert.Equal([blocks[2], blocks[1], blocks[0]], AllocateMany(pool, 3));
    }

    [Fact]
    public void A_hit_after_release_takes_the_block_back_out_of_the_free_queue_with_its_rows()
    {
        var (pool, channel) = NewPoolWithChannel(3);
        var (block, key) = AllocateAndCommit(pool, [5, 6]);
        WriteRows(channel, [block], [5, 6]);
        pool.Release(block);
        Assert.Equal(3, pool.FreeBlockCount);

        Assert.True(pool.TryHit(key, Root, [5, 6], out var hit));

        Assert.Equal(block, hit);
        Assert.Equal(1, pool.RefCount(block));
        Assert.Equal(2, pool.FreeBlockCount);
        Assert.Equal(1, pool.HitBlocks);
        Assert.Equal((6, 1), TokenPositionChannel.Read(channel.Row((block * BlockSize) + 1)));
        Assert.NotEqual(block, pool.Allocate());
        Assert.NotEqual(block, pool.Allocate());
        Assert.False(pool.CanAllocate(1));
    }

    [Fact]
    public void A_hit_on_a_used_block_shares_it()
    {
        var pool = NewPool(2);
        var (block, key) = AllocateAndCommit(pool, [5, 6]);

        Assert.True(pool.TryHit(key, Root, [5, 6], out var hit));

        Assert.Equal(block, hit);
        Assert.Equal(2, pool.RefCount(block));
        pool.Release(block);
        Assert.Equal(1, pool.UsedBlockCount);
        pool.Release(block);
        Assert.Equal(0, pool.UsedBlockCount);
    }

    [Fact]
    public void Reusing_a_cached_block_evicts_its_key_and_resets_every_channel()
    {
        var routing = new RoutingChannel(Format, 1, BlockSize);
        var tokens = new TokenPositionChannel(1, BlockSize);
        var pool = new BlockPool(1, BlockSize, enablePrefixCaching: true, [routing, tokens]);
        var (block, key) = AllocateAndCommit(pool, [5, 6]);
        routing.BlockRows(block).Clear();
        WriteRows(tokens, [block], [5, 6]);
        pool.Release(block);

        Assert.Equal(block, pool.Allocate());

        Assert.False(pool.IsCached(block));
        Assert.Null(pool.KeyOf(block));
        Assert.Equal(0, pool.CachedBlockCount);
        Assert.Equal(1, pool.Evictions);
        Assert.True(routing.ContainsUnset(routing.Row(block * BlockSize)));
        Assert.True(routing.BlockRows(block).IndexOfAnyExcept(BlockChannel.UnsetByte) < 0);
        Assert.True(tokens.BlockRows(block).IndexOfAnyExcept(BlockChannel.UnsetByte) < 0);
        Assert.False(pool.TryHit(key, Root, [5, 6], out _));
    }

    [Fact]
    public void A_hit_requires_the_stored_token_ids_not_just_the_key()
    {
        var pool = NewPool(2);
        var forgedKey = BlockKey.Chain(Root, [1, 2]);
        var block = pool.Allocate();
        pool.Commit(block, forgedKey, Root, [9, 9]);

        Assert.False(pool.TryHit(forgedKey, Root, [1, 2], out var hit));

        Assert.Equal(-1, hit);
        Assert.Equal(1, pool.HashCollisions);
        Assert.Equal(0, pool.HitBlocks);
        Assert.Equal(1, pool.RefCount(block));
        Assert.True(pool.TryHit(forgedKey, Root, [9, 9], out _));
    }

    [Fact]
    public void A_hit_requires_the_stored_parent_not_just_the_key()
    {
        var pool = NewPool(2);
        var key = BlockKey.Chain(Root, [1, 2]);
        var otherParent = BlockKey.Chain(Root, [3, 3]);
        var block = pool.Allocate();
        pool.Commit(block, key, otherParent, [1, 2]);
        pool.Release(block);

        Assert.False(pool.TryHit(key, Root, [1, 2], out _));

        Assert.Equal(1, pool.HashCollisions);
        Assert.Equal(0, pool.RefCount(block));
        Assert.Equal(2, pool.FreeBlockCount);
    }

    [Fact]
    public void Committing_under_a_key_already_indexed_leaves_the_block_uncached()
    {
        var pool = NewPool(2);
        var (first, key) = AllocateAndCommit(pool, [1, 2]);
        var second = pool.Allocate();

        pool.Commit(second, key, Root, [1, 2]);

        Assert.True(pool.IsCached(first));
        Assert.False(pool.IsCached(second));
        Assert.Equal(1, pool.CachedBlockCount);
        Assert.True(pool.TryHit(key, Root, [1, 2], out var hit));
        Assert.Equal(first, hit);
    }

    [Fact]
    public void Releasing_a_free_block_throws()
    {
        var pool = NewPool(2);
        var block = pool.Allocate();
        pool.Release(block);

        Assert.Throws<InvalidOperationException>(() => pool.Release(block));
        Assert.Throws<InvalidOperationException>(() => pool.Release(1));
        Assert.Equal(2, pool.FreeBlockCount);
    }

    [Fact]
    public void Committing_a_block_twice_throws()
    {
        var pool = NewPool(2);
        var (block, key) = AllocateAndCommit(pool, [1, 2]);
        Assert.Throws<InvalidOperationException>(() => pool.Commit(block, key, Root, [1, 2]));
        Assert.Throws<InvalidOperationException>(() => pool.Commit(block, BlockKey.Chain(Root, [7, 7]), Root, [7, 7]));
    }

    [Fact]
    public void Committing_a_free_block_throws()
    {
        var pool = NewPool(2);
        Assert.Throws<InvalidOperationException>(() => pool.Commit(0, BlockKey.Chain(Root, [1, 2]), Root, [1, 2]));
    }

    [Fact]
    public void A_reallocated_block_can_be_committed_again()
    {
        var pool = NewPool(1);
        var (block, _) = AllocateAndCommit(pool, [1, 2]);
        pool.Release(block);
        var (again, key) = AllocateAndCommit(pool, [3, 4]);
        Assert.Equal(block, again);
        Assert.Equal(key, pool.KeyOf(again));
    }

    [Fact]
    public void Allocating_with_no_free_block_throws()
    {
        var pool = NewPool(1);
        pool.Allocate();
        Assert.Throws<InvalidOperationException>(() => pool.Allocate());
    }

    [Fact]
    public void Partial_blocks_are_neither_committed_nor_looked_up()
    {
        var pool = NewPool(1);
        var block = pool.Allocate();
        Assert.Throws<ArgumentException>(() => pool.Commit(block, BlockKey.Chain(Root, [1]), Root, [1]));
        Assert.Throws<ArgumentException>(() => pool.TryHit(BlockKey.Chain(Root, [1]), Root, [1], out _));
    }

    [Fact]
    public void With_prefix_caching_off_nothing_is_cached_or_hit()
    {
        var pool = new BlockPool(2, BlockSize, enablePrefixCaching: false, []);
        var (block, key) = AllocateAndCommit(pool, [1, 2]);

        Assert.False(pool.IsCached(block));
        Assert.False(pool.TryHit(key, Root, [1, 2], out _));
        pool.Release(block);
        Assert.False(pool.TryHit(key, Root, [1, 2], out _));
        Assert.Equal(0, pool.CachedBlockCount);
        Assert.Equal(0, pool.HitBlocks);
        var again = pool.Allocate();
        pool.Commit(again, key, Root, [1, 2]);
        Assert.Throws<InvalidOperationException>(() => pool.Commit(again, key, Root, [1, 2]));
    }

    [Fact]
    public void Reset_prefix_cache_drops_every_key_but_keeps_used_blocks()
    {
        var (pool, channel) = NewPoolWithChannel(3);
        var (used, usedKey) = AllocateAndCommit(pool, [1, 2]);
        WriteRows(channel, [used], [1, 2]);
        var (free, freeKey) = AllocateAndCommit(pool, [3, 4]);
        pool.Release(free);

        pool.ResetPrefixCache();

        Assert.Equal(0, pool.CachedBlockCount);
        Assert.False(pool.IsCached(used));
        Assert.False(pool.TryHit(usedKey, Root, [1, 2], out _));
        Assert.False(pool.TryHit(freeKey, Root, [3, 4], out _));
        Assert.Equal(1, pool.RefCount(used));
        Assert.Equal((2, 1), TokenPositionChannel.Read(channel.Row((used * BlockSize) + 1)));
        Assert.Equal(2, pool.FreeBlockCount);
        Assert.Equal(0, pool.HashCollisions);
    }

    [Fact]
    public void Channels_must_match_the_pool()
    {
        Assert.Throws<ArgumentException>(() => new BlockPool(2, BlockSize, true, [new TokenPositionChannel(3, BlockSize)]));
        Assert.Throws<ArgumentException>(() => new BlockPool(2, BlockSize, true, [new TokenPositionChannel(2, BlockSize + 1)]));
        Assert.Throws<ArgumentException>(() => new BlockPool(2, BlockSize, true, [new TokenPositionChannel(2, BlockSize), new TokenPositionChannel(2, BlockSize)]));
    }

    [Fact]
    public void Allocate_release_and_lookup_allocate_nothing()
    {
        var (pool, _) = NewPoolWithChannel(8);
        int[] tokens = [1, 2];
        var key = BlockKey.Chain(Root, tokens);
        RoundTrip(pool, key, tokens);
        var before = GC.GetAllocatedBytesForCurrentThread();

        for (var i = 0; i < 100; i++)
        {
            RoundTrip(pool, key, tokens);
        }

        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
        Assert.Equal(0, pool.UsedBlockCount);

        static void RoundTrip(BlockPool pool, BlockKey key, int[] tokens)
        {
            if (!pool.TryHit(key, Root, tokens, out var block))
            {
                block = pool.Allocate();
                pool.Commit(block, key, Root, tokens);
            }
            var fresh = pool.Allocate();
            pool.Release(fresh);
            pool.Release(block);
            var evicting = pool.Allocate();
            pool.Release(evicting);
        }
    }

    private static BlockPool NewPool(int numBlocks) => new(numBlocks, BlockSize, enablePrefixCaching: true, []);

    private static (BlockPool Pool, TokenPositionChannel Channel) NewPoolWithChannel(int numBlocks)
    {
        var channel = new TokenPositionChannel(numBlocks, BlockSize);
        return (new BlockPool(numBlocks, BlockSize, enablePrefixCaching: true, [channel]), channel);
    }

    private static int[] AllocateMany(BlockPool pool, int count)
    {
        var blocks = new int[count];
        for (var i = 0; i < count; i++)
        {
            blocks[i] = pool.Allocate();
        }
        return blocks;
    }

    private static (int Block, BlockKey Key) AllocateAndCommit(BlockPool pool, int[] tokens)
    {
        var block = pool.Allocate();
        var key = BlockKey.Chain(Root, tokens);
        pool.Commit(block, key, Root, tokens);
        return (block, key);
    }

    private static void WriteRows(TokenPositionChannel channel, int[] blockTable, int[] tokens)
    {
        var batch = StepBuilder.NewBatch(Format);
        StepBuilder.AddTokens(batch, blockTable, BlockSize, tokens, start: 0, count: tokens.Length);
        channel.CaptureStep(batch);
    }
}
