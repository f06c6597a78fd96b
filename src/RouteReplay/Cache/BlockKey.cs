using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.IO.Hashing;
using System.Runtime.InteropServices;

namespace RouteReplay.Cache;

/// <summary>
/// The 128-bit key of a full KV block, used by the prefix index, storage and transfer. Keys form a hash chain: a
/// block's key is <see cref="XxHash128"/> over its parent's key and its token ids, and the first block's parent is
/// <see cref="Root"/> of the model fingerprint, so the same tokens under other weights or layouts get other keys. A
/// key alone never proves a match: a hit is verified against the stored parent key and token ids.
/// </summary>
/// <param name="Value">The hash value.</param>
public readonly record struct BlockKey(UInt128 Value)
{
    /// <summary>Token ids of blocks up to this size are hashed from a stack buffer; larger blocks rent one.</summary>
    private const int StackTokenLimit = 256;

    private const int KeyBytes = 16;

    /// <summary>The seed of a sequence's chain: the parent key of its first block.</summary>
    /// <param name="fingerprint">The <see cref="ModelFingerprint"/> of the model whose KV the blocks hold.</param>
    public static BlockKey Root(UInt128 fingerprint) => new(fingerprint);

    /// <summary>
    /// The key of the block holding <paramref name="tokenIds"/> after <paramref name="parent"/>: XxHash128 over the
    /// parent's 16 bytes (little-endian) followed by every token id as a little-endian int32. Allocates nothing for
    /// blocks of up to 256 tokens.
    /// </summary>
    public static BlockKey Chain(BlockKey parent, ReadOnlySpan<int> tokenIds)
    {
        var length = KeyBytes + (tokenIds.Length * sizeof(int));
        byte[]? rented = null;
        var buffer = tokenIds.Length <= StackTokenLimit
            ? stackalloc byte[KeyBytes + (StackTokenLimit * sizeof(int))]
            : rented = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            var input = buffer[..length];
            BinaryPrimitives.WriteUInt128LittleEndian(input, parent.Value);
            WriteLittleEndian(tokenIds, input[KeyBytes..]);
            return new BlockKey(XxHash128.HashToUInt128(input));
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>The key as 32 lowercase hex digits.</summary>
    public override string ToString() => Value.ToString("x32", CultureInfo.InvariantCulture);

    private static void WriteLittleEndian(ReadOnlySpan<int> values, Span<byte> destination)
    {
        if (BitConverter.IsLittleEndian)
        {
            MemoryMarshal.AsBytes(values).CopyTo(destination);
            return;
        }
        for (var i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(destination[(i * sizeof(int))..], values[i]);
        }
    }
}
