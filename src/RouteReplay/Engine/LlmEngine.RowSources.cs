using System.Runtime.InteropServices;
using RouteReplay.Cache;

namespace RouteReplay.Engine;

/// <summary>Where a sequence's channel rows are while it is running, swapped out or preempted by recompute.</summary>
public sealed partial class LlmEngine
{
    /// <summary>
    /// Copies the rows of positions <c>[start, start + count)</c> of <paramref name="channel"/> into
    /// <paramref name="destination"/>. Positions below <see cref="Sequence.ComputedTokens"/> are read from the sequence's
    /// blocks: its device blocks, or while it is swapped out its host-tier payloads (through the payload layout every
    /// tier move uses). Positions past them are those of a sequence preempted by recompute: their routing rows come from
    /// the rows it saved; a position with no saved row is left unset, so the integrity check fails the request. Other
    /// channels are not saved on recompute: for them the method returns false when such positions are asked for.
    /// </summary>
    private bool TryGatherRows(Sequence sequence, BlockChannel channel, int start, int count, Span<byte> destination)
    {
        var fromBlocks = Math.Clamp(sequence.ComputedTokens - start, 0, count);
        var past = count - fromBlocks;
        if (past > 0 && !ReferenceEquals(channel, _routing))
        {
            return false;
        }
        if (fromBlocks > 0)
        {
            if (sequence.IsSwapped)
            {
                GatherFromHost(CollectionsMarshal.AsSpan(sequence.HostBlocks), channel, start, fromBlocks, destination);
            }
            else
            {
                channel.Gather(CollectionsMarshal.AsSpan(sequence.BlockTable), start, fromBlocks, destination);
            }
        }
        if (past > 0)
        {
            var rowBytes = channel.RowBytes;
            var first = start + fromBlocks;
            var saved = Math.Clamp(sequence.SavedRoutingRows - first, 0, past);
            var rest = destination.Slice(fromBlocks * rowBytes, past * rowBytes);
            if (saved > 0)
            {
                sequence.SavedRouting.AsSpan(first * rowBytes, saved * rowBytes).CopyTo(rest);
            }
            rest[(saved * rowBytes)..].Fill(BlockChannel.UnsetByte);
        }
        return true;
    }

    /// <summary>Like <see cref="BlockChannel.Gather"/>, over host-tier blocks in block-table order.</summary>
    private void GatherFromHost(ReadOnlySpan<int> hostBlocks, BlockChannel channel, int start, int count, Span<byte> destination)
    {
        var blockSize = Options.BlockSize;
        var rowBytes = channel.RowBytes;
        var position = start;
        var end = start + count;
        while (position < end)
        {
            var offset = position % blockSize;
            var rows = Math.Min(blockSize - offset, end - position);
            var blockRows = _copier.ChannelRows(_host!.Payload(hostBlocks[position / blockSize]), channel);
            blockRows.Slice(offset * rowBytes, rows * rowBytes).CopyTo(destination);
            destination = destination[(rows * rowBytes)..];
            position += rows;
        }
    }
}
