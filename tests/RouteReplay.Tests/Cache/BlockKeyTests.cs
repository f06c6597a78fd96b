using System.Buffers.Binary;
using System.IO.Hashing;
using RouteReplay.Cache;

namespace RouteReplay.Tests.Cache;

public sealed class BlockKeyTests
{
    private static readonly BlockKey Root = BlockKey.Root(new UInt128(0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210));

    [Fact]
    public void The_same_parent_and_tokens_give_the_same_key()
    {
        Assert.Equal(BlockKey.Chain(Root, [1, 2, 3, 4]), BlockKey.Chain(Root, [1, 2, 3, 4]));
    }

    [Fact]
    public void Different_tokens_give_different_keys()
    {
        Assert.NotEqual(BlockKey.Chain(Root, [1, 2, 3, 4]), BlockKey.Chain(Root, [1, 2, 3, 5]));
    }

    [Fact]
    public void Token_order_matters()
    {
        Assert.NotEqual(BlockKey.Chain(Root, [1, 2, 3, 4]), BlockKey.Chain(Root, [2, 1, 3, 4]));
    }

    [Fact]
    public void Different_parents_give_different_keys()
    {
        var parentA = BlockKey.Chain(Root, [7, 7]);
        var parentB = BlockKey.Chain(Root, [7, 8]);
        Assert.NotEqual(BlockKey.Chain(parentA, [1, 2]), BlockKey.Chain(parentB, [1, 2]));
    }

    [Fact]
    public void Different_fingerprints_give_different_chains()
    {
        Assert.NotEqual(BlockKey.Chain(BlockKey.Root(1), [1, 2]), BlockKey.Chain(BlockKey.Root(2), [1, 2]));
    }

    [Fact]
    public void The_key_is_xxhash128_of_the_parent_then_little_endian_token_ids()
    {
        int[] tokens = [5, -1, 151_645];
        var input = new byte[16 + (tokens.Length * 4)];
        BinaryPrimitives.WriteUInt128LittleEndian(input, Root.Value);
        for (var i = 0; i < tokens.Length; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(input.AsSpan(16 + (i * 4)), tokens[i]);
        }
        Assert.Equal(XxHash128.HashToUInt128(input), BlockKey.Chain(Root, tokens).Value);
    }

    [Fact]
    public void Blocks_larger_than_the_stack_buffer_hash_the_same_way()
    {
        var tokens = Enumerable.Range(0, 1000).ToArray();
        var input = new byte[16 + (tokens.Length * 4)];
        BinaryPrimitives.WriteUInt128LittleEndian(input, Root.Value);
        for (var i = 0; i < tokens.Length; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(input.AsSpan(16 + (i * 4)), tokens[i]);
        }
        Assert.Equal(XxHash128.HashToUInt128(input), BlockKey.Chain(Root, tokens).Value);
    }

    [Fact]
    public void Chaining_a_block_allocates_nothing()
    {
        var tokens = Enumerable.Range(0, 16).ToArray();
        BlockKey.Chain(Root, tokens);
        var before = GC.GetAllocatedBytesForCurrentThread();
        var key = Root;
        for (var i = 0; i < 100; i++)
        {
            key = BlockKey.Chain(key, tokens);
        }
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
        Assert.NotEqual(Root, key);
    }
}
