using System.Buffers.Binary;
using RouteReplay.Backends;
using RouteReplay.Cache;

namespace RouteReplay.Tests.Support;

/// <summary>A test-only channel storing each slot's token id and position: proves channels are general and travel with blocks.</summary>
public sealed class TokenPositionChannel(int numBlocks, int blockSize) : BlockChannel("token_position", 8, numBlocks, blockSize)
{
    protected override void WriteStepRow(ForwardBatch batch, int token, Span<byte> destination)
    {
        BinaryPrimitives.WriteInt32LittleEndian(destination, batch.TokenIds[token]);
        BinaryPrimitives.WriteInt32LittleEndian(destination[4..], batch.Positions[token]);
    }

    /// <summary>The rows this channel must hold for positions <c>[start, start + tokens.Count)</c> of a sequence.</summary>
    public static byte[] Expected(IReadOnlyList<int> tokens, int start, int count)
    {
        var rows = new byte[count * 8];
        for (var i = 0; i < count; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(rows.AsSpan(i * 8), tokens[start + i]);
            BinaryPrimitives.WriteInt32LittleEndian(rows.AsSpan((i * 8) + 4), start + i);
        }
        return rows;
    }
}
