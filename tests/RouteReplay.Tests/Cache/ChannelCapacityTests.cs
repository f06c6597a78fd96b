using RouteReplay.Backends;
using RouteReplay.Cache;
using RouteReplay.Routing;

namespace RouteReplay.Tests.Cache;

/// <summary>
/// A channel holds whatever pool a device gives: its rows live in chunks of whole blocks, so more than the 2 GiB of one
/// array (the small preset on an H200 needs a 2.2 GB routing channel) is no limit, and every block's rows stay
/// contiguous wherever the chunks split.
/// </summary>
public sealed class ChannelCapacityTests
{
    /// <summary>A distinct byte pattern for a block's rows, never all <see cref="BlockChannel.UnsetByte"/>.</summary>
    private static byte[] Pattern(int block, int length) => Enumerable.Range(0, length).Select(i => (byte)((block * 31) + (i * 7) + 1)).Select(b => b == BlockChannel.UnsetByte ? (byte)0 : b).ToArray();

    [Fact]
    public void A_routing_channel_larger_than_one_array_keeps_the_rows_of_its_last_block_exactly()
    {
        // The small preset's routing rows (8 MoE layers, top-8, uint8: 64 bytes) over 2,100,000 blocks of 16: 2.15e9 bytes.
        var format = new RoutingFormat([0, 1, 2, 3, 4, 5, 6, 7], 8, 64);
        const int numBlocks = 2_100_000;
        const int blockSize = 16;
        var channel = new RoutingChannel(format, numBlocks, blockSize);
        try
        {
            Assert.True(channel.TotalBytes > int.MaxValue, $"{channel.TotalBytes} bytes");
            var blockBytes = blockSize * format.RowBytes;
            int[] blocks = [0, 1, (int)(BlockChannel.DefaultChunkBytes / blockBytes) - 1, (int)(BlockChannel.DefaultChunkBytes / blockBytes), numBlocks - 2, numBlocks - 1];
            foreach (var block in blocks)
            {
                Assert.True(channel.BlockRows(block).IndexOfAnyExcept(BlockChannel.UnsetByte) < 0, $"block {block} starts unset");
                Pattern(block, blockBytes).CopyTo(channel.BlockRows(block));
            }
            foreach (var block in blocks)
            {
                Assert.Equal(Pattern(block, blockBytes), channel.BlockRows(block).ToArray());
            }
            var lastSlot = (numBlocks * blockSize) - 1;
            Assert.Equal(Pattern(numBlocks - 1, blockBytes)[^format.RowBytes..], channel.Row(lastSlot).ToArray());
            Assert.Throws<ArgumentOutOfRangeException>(() => channel.Row(lastSlot + 1).Length);

            var gathered = new byte[3 * format.RowBytes];
            channel.Gather([numBlocks - 2, numBlocks - 1], blockSize - 1, 3, gathered);
            Assert.Equal([.. Pattern(numBlocks - 2, blockBytes)[^format.RowBytes..], .. Pattern(numBlocks - 1, blockBytes)[..(2 * format.RowBytes)]], gathered);

            channel.CopyBlock(0, numBlocks - 1);
            Assert.Equal(Pattern(0, blockBytes), channel.BlockRows(numBlocks - 1).ToArray());
            channel.ResetBlock(numBlocks - 1);
            Assert.True(format.ContainsSentinel(channel.Row(lastSlot)));
            Assert.True(channel.BlockRows(numBlocks - 1).IndexOfAnyExcept(BlockChannel.UnsetByte) < 0);
            Assert.Equal(Pattern(numBlocks - 2, blockBytes), channel.BlockRows(numBlocks - 2).ToArray());
        }
        finally
        {
            channel = null;
            GC.Collect();
        }
    }

    [Fact]
    public void Rows_across_chunk_boundaries_capture_gather_copy_and_reset_like_one_array()
    {
        const int blockSize = 4;
        const int numBlocks = 10;
        var chunked = new BytesChannel(numBlocks, blockSize, maxChunkBytes: 3 * blockSize * BytesChannel.RowLength);
        var whole = new BytesChannel(numBlocks, blockSize);
        foreach (var channel in new[] { chunked, whole })
        {
            for (var slot = 0; slot < numBlocks * blockSize; slot++)
            {
                channel.Row(slot).Fill((byte)(slot + 1));
            }
            channel.CopyBlock(8, 2);
            channel.ResetBlock(5);
        }
        for (var block = 0; block < numBlocks; block++)
        {
            Assert.Equal(whole.BlockRows(block).ToArray(), chunked.BlockRows(block).ToArray());
        }
        int[] table = [1, 3, 2, 5, 9];
        var expected = new byte[17 * BytesChannel.RowLength];
        var actual = new byte[17 * BytesChannel.RowLength];
        whole.Gather(table, 2, 17, expected);
        chunked.Gather(table, 2, 17, actual);
        Assert.Equal(expected, actual);
        Assert.Equal((8 * blockSize) + 1, actual[6 * BytesChannel.RowLength]);
        Assert.Equal(BlockChannel.UnsetByte, actual[10 * BytesChannel.RowLength]);
    }

    [Fact]
    public void A_block_larger_than_a_chunk_is_refused_naming_the_channel()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new BytesChannel(4, 16, maxChunkBytes: 16 * BytesChannel.RowLength - 1));
        Assert.Contains("channel 'bytes'", error.Message);
    }

    private sealed class BytesChannel(int numBlocks, int blockSize, long maxChunkBytes = BlockChannel.DefaultChunkBytes)
        : BlockChannel("bytes", RowLength, numBlocks, blockSize, maxChunkBytes)
    {
        public const int RowLength = 3;

        protected override void WriteStepRow(ForwardBatch batch, int token, Span<byte> destination) => destination.Fill((byte)token);
    }
}
