using RouteReplay.Backends;
using RouteReplay.Cache;
using RouteReplay.Routing;

using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Cache;

public sealed class BlockChannelTests
{
    private const int BlockSize = 4;
    private const int NumBlocks = 6;

    private static readonly RoutingFormat Uint8Format = new([1, 2, 3], 2, 8);
    private static readonly RoutingFormat Uint16Format = new([0, 1], 3, 300);

    [Fact]
    public void A_new_channel_holds_the_sentinel_everywhere()
    {
        var channel = new RoutingChannel(Uint16Format, NumBlocks, BlockSize);
        for (var block = 0; block < NumBlocks; block++)
        {
            Assert.True(channel.BlockRows(block).IndexOfAnyExcept(BlockChannel.UnsetByte) < 0);
        }
    }

    [Theory]
    [InlineData(8)]
    [InlineData(300)]
    public void Reset_gives_the_routing_sentinel_in_every_row_of_the_block_only(int experts)
    {
        var format = new RoutingFormat([1, 2], 2, experts);
        var channel = new RoutingChannel(format, NumBlocks, BlockSize);
        for (var block = 0; block < NumBlocks; block++)
        {
            channel.BlockRows(block).Clear();
        }

        channel.ResetBlock(2);

        for (var slot = 2 * BlockSize; slot < 3 * BlockSize; slot++)
        {
            for (var e = 0; e < format.ElementsPerRow; e++)
            {
                Assert.Equal(format.Sentinel, format.Get(channel.Row(slot), e));
            }
        }
        Assert.True(channel.BlockRows(1).IndexOfAnyExcept((byte)0) < 0);
        Assert.True(channel.BlockRows(3).IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public void Block_rows_are_the_block_size_rows_of_its_slots()
    {
        var channel = new RoutingChannel(Uint8Format, NumBlocks, BlockSize);
        channel.Row((3 * BlockSize) + 2)[0] = 42;
        Assert.Equal(BlockSize * Uint8Format.RowBytes, channel.BlockRows(3).Length);
        Assert.Equal(42, channel.BlockRows(3)[2 * Uint8Format.RowBytes]);
    }

    [Fact]
    public void Capture_step_writes_each_tokens_routing_row_at_its_slot()
    {
        var channel = new RoutingChannel(Uint16Format, NumBlocks, BlockSize);
        var batch = StepBuilder.NewBatch(Uint16Format);
        int[] blockTable = [4, 1];
        int[] tokens = [10, 11, 12, 13, 14, 15];
        StepBuilder.AddTokens(batch, blockTable, BlockSize, tokens, start: 1, count: 5);

        channel.CaptureStep(batch);

        Assert.True(channel.ContainsUnset(channel.Row(4 * BlockSize)));
        for (var p = 1; p < tokens.Length; p++)
        {
            var slot = (blockTable[p / BlockSize] * BlockSize) + (p % BlockSize);
            Assert.Equal(StepBuilder.ExpectedRoutingRow(Uint16Format, tokens[p], p), channel.Row(slot).ToArray());
        }
        Assert.True(channel.ContainsUnset(channel.Row((1 * BlockSize) + 2)));
    }

    [Fact]
    public void Gather_follows_a_non_contiguous_block_table()
    {
        var channel = new TokenPositionChannel(NumBlocks, BlockSize);
        var batch = StepBuilder.NewBatch(Uint8Format);
        int[] blockTable = [5, 0, 3];
        var tokens = Enumerable.Range(100, 11).ToArray();
        StepBuilder.AddTokens(batch, blockTable, BlockSize, tokens, start: 0, count: tokens.Length);
        channel.CaptureStep(batch);

        var rows = new byte[8 * channel.RowBytes];
        channel.Gather(blockTable, startPosition: 2, count: 8, rows);

        for (var i = 0; i < 8; i++)
        {
            var p = 2 + i;
            Assert.Equal((tokens[p], p), TokenPositionChannel.Read(rows.AsSpan(i * channel.RowBytes)));
        }
    }

    [Fact]
    public void Gather_rejects_a_destination_too_short()
    {
        var channel = new TokenPositionChannel(NumBlocks, BlockSize);
        Assert.Throws<ArgumentException>(() => channel.Gather([0, 1], 0, 5, new byte[(5 * channel.RowBytes) - 1]));
    }

    [Fact]
    public void Routing_contains_unset_detects_a_single_unset_uint16_element()
    {
        var channel = new RoutingChannel(Uint16Format, NumBlocks, BlockSize);
        var rows = new byte[2 * Uint16Format.RowBytes];
        for (var e = 0; e < 2 * Uint16Format.ElementsPerRow; e++)
        {
            Uint16Format.Set(rows, e, 0xFF);
        }
        Assert.False(channel.ContainsUnset(rows));

        Uint16Format.Set(rows, Uint16Format.ElementsPerRow + 1, Uint16Format.Sentinel);

        Assert.True(channel.ContainsUnset(rows));
    }

    [Fact]
    public void Routing_contains_unset_ignores_ff_bytes_of_valid_uint16_ids()
    {
        var channel = new RoutingChannel(Uint16Format, NumBlocks, BlockSize);
        var row = new byte[Uint16Format.RowBytes];
        for (var e = 0; e < Uint16Format.ElementsPerRow; e++)
        {
            Uint16Format.Set(row, e, e % 2 == 0 ? 0x00FF : 0xFF00);
        }
        Assert.False(channel.ContainsUnset(row));
    }

    [Fact]
    public void The_default_contains_unset_treats_any_ff_byte_as_unset()
    {
        var channel = new PlainChannel();
        Assert.False(channel.ContainsUnset([1, 2, 3]));
        Assert.True(channel.ContainsUnset([1, 0xFF, 3]));
    }

    [Fact]
    public void A_second_channel_kind_captures_token_ids_and_positions()
    {
        var channel = new TokenPositionChannel(NumBlocks, BlockSize);
        var batch = StepBuilder.NewBatch(Uint8Format);
        int[] blockTable = [2];
        int[] tokens = [-5, 0x7FFF_FFFF, 3];
        StepBuilder.AddTokens(batch, blockTable, BlockSize, tokens, start: 0, count: 3);

        channel.CaptureStep(batch);

        Assert.Equal((0x7FFF_FFFF, 1), TokenPositionChannel.Read(channel.Row((2 * BlockSize) + 1)));
        Assert.Equal((-5, 0), TokenPositionChannel.Read(channel.Row(2 * BlockSize)));
        Assert.False(channel.ContainsUnset(channel.BlockRows(2)[..(3 * channel.RowBytes)]));
        Assert.True(channel.ContainsUnset(channel.BlockRows(2)));
    }

    [Fact]
    public void Copy_block_moves_every_row()
    {
        var channel = new TokenPositionChannel(NumBlocks, BlockSize);
        var batch = StepBuilder.NewBatch(Uint8Format);
        StepBuilder.AddTokens(batch, [1], BlockSize, [9, 8, 7, 6], start: 0, count: 4);
        channel.CaptureStep(batch);

        channel.CopyBlock(1, 4);

        Assert.Equal(channel.BlockRows(1).ToArray(), channel.BlockRows(4).ToArray());
        Assert.Equal((6, 3), TokenPositionChannel.Read(channel.Row((4 * BlockSize) + 3)));
    }

    [Fact]
    public void Rows_outside_the_channel_are_rejected()
    {
        var channel = new TokenPositionChannel(NumBlocks, BlockSize);
        Assert.Throws<ArgumentOutOfRangeException>(() => channel.Row(NumBlocks * BlockSize));
        Assert.Throws<ArgumentOutOfRangeException>(() => channel.Row(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => channel.BlockRows(NumBlocks));
    }

    [Fact]
    public void The_routing_channel_is_named_and_sized_by_its_format()
    {
        var channel = new RoutingChannel(Uint16Format, NumBlocks, BlockSize);
        Assert.Equal("routing", channel.Name);
        Assert.Equal(Uint16Format.RowBytes, channel.RowBytes);
        Assert.Same(Uint16Format, channel.Format);
    }

    private sealed class PlainChannel() : BlockChannel("plain", 3, 1, 1)
    {
        protected override void WriteStepRow(ForwardBatch batch, int token, Span<byte> destination) => destination.Clear();
    }
}
