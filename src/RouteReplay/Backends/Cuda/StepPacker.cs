using System.Runtime.InteropServices;

namespace RouteReplay.Backends.Cuda;

/// <summary>Byte offsets of a step's input sections in the staging buffer (and in the device's copy of it).</summary>
internal readonly record struct StepLayout(long TokenIds, long Positions, long Slots, long TokenSequence, long LogitTokens, long BlockTables, long Forced, long TotalBytes);

/// <summary>
/// Packs a <see cref="ForwardBatch"/> into one contiguous staging buffer, so a step's inputs reach the device in a
/// single copy: token ids, positions, slots, each token's sequence, the logit rows' tokens, the sequences' block
/// tables (one row of <c>blocksPerSequence</c> entries each) and, only when the step has any, the forced routing rows.
/// Sections start on 256-byte boundaries, in that order.
/// </summary>
internal static class StepPacker
{
    public const int Alignment = 256;

    /// <summary>The staging bytes the largest step needs.</summary>
    public static long CapacityBytes(int maxTokens, int maxSequences, int blocksPerSequence, int maxLogitRows, int routingRowBytes) =>
        Layout(maxTokens, maxSequences, blocksPerSequence, maxLogitRows, routingRowBytes).TotalBytes;

    /// <param name="forcedRowBytes">Bytes of one forced routing row, or 0 when the step forces none.</param>
    public static StepLayout Layout(int tokens, int sequences, int blocksPerSequence, int logitRows, int forcedRowBytes)
    {
        long at = 0;
        long Next(long bytes)
        {
            var start = at;
            at = Align(at + bytes);
            return start;
        }
        var tokenIds = Next(tokens * 4L);
        var positions = Next(tokens * 4L);
        var slots = Next(tokens * 4L);
        var sequence = Next(tokens * 4L);
        var logitTokens = Next(logitRows * 4L);
        var blockTables = Next((long)sequences * blocksPerSequence * 4);
        var forced = forcedRowBytes > 0 ? Next((long)tokens * forcedRowBytes) : -1;
        return new StepLayout(tokenIds, positions, slots, sequence, logitTokens, blockTables, forced, at);
    }

    /// <summary>Writes the batch's inputs into <paramref name="staging"/> and returns where each section went.</summary>
    public static StepLayout Pack(ForwardBatch batch, Span<byte> staging, int blocksPerSequence)
    {
        var n = batch.TokenCount;
        var rowBytes = batch.RoutingFormat.RowBytes;
        var layout = Layout(n, batch.SequenceCount, blocksPerSequence, batch.LogitRowCount, batch.HasForcedRouting ? rowBytes : 0);
        if (layout.TotalBytes > staging.Length)
        {
            throw new ArgumentException($"the step needs {layout.TotalBytes} staging bytes, the buffer holds {staging.Length}", nameof(staging));
        }
        Write(staging, layout.TokenIds, batch.TokenIds.AsSpan(0, n));
        Write(staging, layout.Positions, batch.Positions.AsSpan(0, n));
        Write(staging, layout.Slots, batch.SlotMapping.AsSpan(0, n));
        Write(staging, layout.TokenSequence, batch.TokenSequence.AsSpan(0, n));
        Write(staging, layout.LogitTokens, batch.LogitTokens.AsSpan(0, batch.LogitRowCount));
        var copied = Math.Min(blocksPerSequence, batch.MaxBlocksPerSequence);
        for (var s = 0; s < batch.SequenceCount; s++)
        {
            Write(staging, layout.BlockTables + ((long)s * blocksPerSequence * 4), batch.BlockTable(s)[..copied]);
        }
        if (layout.Forced >= 0)
        {
            batch.ForcedRouting.AsSpan(0, n * rowBytes).CopyTo(staging[(int)layout.Forced..]);
        }
        return layout;
    }

    private static void Write(Span<byte> staging, long offset, ReadOnlySpan<int> values) =>
        MemoryMarshal.AsBytes(values).CopyTo(staging[(int)offset..]);

    private static long Align(long bytes) => (bytes + Alignment - 1) / Alignment * Alignment;
}
