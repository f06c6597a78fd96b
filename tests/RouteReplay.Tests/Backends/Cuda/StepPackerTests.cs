using System.Runtime.InteropServices;
using RouteReplay.Backends;
using RouteReplay.Backends.Cuda;
using RouteReplay.Routing;

namespace RouteReplay.Tests.Backends.Cuda;

/// <summary>A step's inputs reach the GPU as one contiguous staging buffer with 256-byte aligned sections.</summary>
public sealed class StepPackerTests
{
    private static readonly RoutingFormat Format = new([1, 2], topK: 2, numExperts: 8);

    [Fact]
    public void Sections_follow_each_other_on_256_byte_boundaries_and_forced_rows_only_when_present()
    {
        var layout = StepPacker.Layout(tokens: 70, sequences: 3, blocksPerSequence: 5, logitRows: 3, forcedRowBytes: 0);
        Assert.Equal(0, layout.TokenIds);
        Assert.Equal(512, layout.Positions);
        Assert.Equal(1024, layout.Slots);
        Assert.Equal(1536, layout.TokenSequence);
        Assert.Equal(2048, layout.LogitTokens);
        Assert.Equal(2304, layout.BlockTables);
        Assert.Equal(-1, layout.Forced);
        Assert.Equal(2560, layout.TotalBytes);
        var forced = StepPacker.Layout(70, 3, 5, 3, Format.RowBytes);
        Assert.Equal(2560, forced.Forced);
        Assert.Equal(2560 + 512, forced.TotalBytes);
    }

    [Fact]
    public void Packing_copies_every_input_and_repacks_block_tables_to_the_backends_stride()
    {
        using var batch = new ForwardBatch(maxTokens: 8, maxSequences: 2, maxBlocksPerSequence: 4, Format, vocabSize: 10);
        var a = batch.AddSequence([7, 3]);
        var b = batch.AddSequence([5, 6, 9]);
        batch.AddToken(a, 11, 17, 49, needsLogits: true);
        batch.AddToken(b, 12, 0, 80, needsLogits: false);
        var forcedRow = new byte[] { 1, 2, 3, 4 };
        batch.AddToken(b, 13, 1, 81, needsLogits: true, forcedRow);
        var staging = new byte[(int)StepPacker.CapacityBytes(8, 2, 6, 2, Format.RowBytes)];
        var layout = StepPacker.Pack(batch, staging, blocksPerSequence: 6);

        int[] Ints(long offset, int count) => MemoryMarshal.Cast<byte, int>(staging.AsSpan((int)offset, count * 4)).ToArray();
        Assert.Equal([11, 12, 13], Ints(layout.TokenIds, 3));
        Assert.Equal([17, 0, 1], Ints(layout.Positions, 3));
        Assert.Equal([49, 80, 81], Ints(layout.Slots, 3));
        Assert.Equal([0, 1, 1], Ints(layout.TokenSequence, 3));
        Assert.Equal([0, 2], Ints(layout.LogitTokens, 2));
        Assert.Equal([7, 3], Ints(layout.BlockTables, 2));
        Assert.Equal([5, 6, 9], Ints(layout.BlockTables + (6 * 4), 3));
        Assert.True(layout.Forced > 0);
        Assert.Equal(Enumerable.Repeat((byte)0xFF, 4), staging.AsSpan((int)layout.Forced, 4).ToArray());
        Assert.Equal(forcedRow, staging.AsSpan((int)layout.Forced + (2 * Format.RowBytes), 4).ToArray());
    }

    [Fact]
    public void A_staging_buffer_too_small_is_refused()
    {
        using var batch = new ForwardBatch(4, 1, 2, Format, 10);
        var s = batch.AddSequence([0]);
        batch.AddToken(s, 1, 0, 0, needsLogits: true);
        Assert.Throws<ArgumentException>(() => StepPacker.Pack(batch, new byte[100], 2));
    }
}
