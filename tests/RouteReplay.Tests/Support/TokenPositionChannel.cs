using System.Buffers.Binary;
using RouteReplay.Backends;
using RouteReplay.Cache;

namespace RouteReplay.Tests.Support;

/// <summary>
/// A test-only channel: each row is the token id and the position as two little-endian int32s. It proves channels are
/// general and that every path moves them with the block.
/// </summary>
public sealed class TokenPositionChannel(int numBlocks, int blockSize) : BlockChannel("token-position", 8, numBlocks, blockSize)
{
    public static (int TokenId, int Position) Read(ReadOnlySpan<byte> row) =>
        (BinaryPrimitives.ReadInt32LittleEndian(row), BinaryPrimitives.ReadInt32LittleEndian(row[4..]));

    /// <summary>Unset only when a whole row is 0xFF bytes: a valid id or position may contain a 0xFF byte.</summary>
    public override bool ContainsUnset(ReadOnlySpan<byte> rows) => ContainsWholeUnsetRow(rows);

    /// <summary>The rows this channel must hold for positions <c>[start, start + count)</c> of a sequence.</summary>
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

    protected override void WriteStepRow(ForwardBatch batch, int token, Span<byte> destination)
    {
        BinaryPrimitives.WriteInt32LittleEndian(destination, batch.TokenIds[token]);
        BinaryPrimitives.WriteInt32LittleEndian(destination[4..], batch.Positions[token]);
    }
}
