namespace RouteReplay.Cache;

/// <summary>
/// The identity an encoded block value carries besides its layout: the fingerprint of the model that computed it, its
/// prefix key when it is a full block committed to a prefix index (null for a partial block or a transfer that is
/// not keyed), and the key of the block before it (<see cref="BlockKey.Root"/> for a sequence's first block).
/// </summary>
public readonly record struct PayloadHeader(UInt128 Fingerprint, BlockKey? Key, BlockKey Parent);

/// <summary>A value <see cref="PayloadCodec.TryDecode"/> accepted: its header, token ids and payload, as views of the value.</summary>
public readonly ref struct DecodedPayload
{
    internal DecodedPayload(PayloadHeader header, ReadOnlySpan<byte> tokenIdBytes, ReadOnlySpan<byte> payload)
    {
        Header = header;
        TokenIdBytes = tokenIdBytes;
        Payload = payload;
    }

    public PayloadHeader Header { get; }

    /// <summary>Tokens the block holds: the block size for a keyed block, fewer for a partial one.</summary>
    public int TokenCount => TokenIdBytes.Length / sizeof(int);

    /// <summary>The token ids as little-endian int32s.</summary>
    public ReadOnlySpan<byte> TokenIdBytes { get; }

    /// <summary>The whole block payload as <see cref="PayloadCopier"/> lays it out (slots past <see cref="TokenCount"/> hold no data).</summary>
    public ReadOnlySpan<byte> Payload { get; }

    public int TokenId(int index) => System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(TokenIdBytes.Slice(index * sizeof(int), sizeof(int)));

    public void CopyTokenIds(Span<int> destination)
    {
        for (var i = 0; i < TokenCount; i++)
        {
            destination[i] = TokenId(i);
        }
    }
}
