using System.Buffers.Binary;
using RouteReplay.Backends;
using RouteReplay.Cache;

namespace RouteReplay.DeviceChecks.Lifecycle;

/// <summary>
/// A check-only channel: each slot's row names the computation that produced the slot's KV, as (step, token index),
/// two little-endian int32s. Being a channel, it travels with the block through every path (prefix hits, swap, the
/// host tier), so a request's rows say which computation each of its positions used.
/// </summary>
public sealed class ComputationChannel(int numBlocks, int blockSize, FirstRowRecorder recorder)
    : BlockChannel("computation", 8, numBlocks, blockSize)
{
    public static (int Step, int Token) Read(ReadOnlySpan<byte> row) =>
        (BinaryPrimitives.ReadInt32LittleEndian(row), BinaryPrimitives.ReadInt32LittleEndian(row[4..]));

    /// <summary>Unset only when a whole row is 0xFF bytes (a valid step or index may contain one).</summary>
    public override bool ContainsUnset(ReadOnlySpan<byte> rows) => ContainsWholeUnsetRow(rows);

    protected override void WriteStepRow(ForwardBatch batch, int token, Span<byte> destination)
    {
        BinaryPrimitives.WriteInt32LittleEndian(destination, recorder.CurrentStep);
        BinaryPrimitives.WriteInt32LittleEndian(destination[4..], token);
    }
}
