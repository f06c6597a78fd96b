using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Cache;

/// <summary>
/// Encodes one block's payload with a self-describing, checksummed header, and decodes and verifies such values. Used
/// for block storage and for transfers between processes; it knows no store. All integers are little-endian.
/// </summary>
/// <remarks>
/// <para>Value layout (<see cref="FormatVersion"/> 1):</para>
/// <code>
/// offset  bytes  field
///   0       8    magic "RRBLK\0\r\n"
///   8       2    format version (1)
///  10       2    payload layout version (ModelFingerprint.PayloadLayoutVersion)
///  12       4    header bytes H: offset of the payload
///  16       4    payload bytes P
///  20       4    flags: bit 0 set = keyed (a full block committed to a prefix index; Key is its key)
///  24      16    model fingerprint (UInt128)
///  40      16    block key (UInt128; 0 when not keyed)
///  56      16    parent key (UInt128)
///  72       4    block size (slots per block)
///  76       4    token count: 1..block size (= block size when keyed)
///  80       1    KV dtype: 0 F32, 1 F16, 2 BF16
///  81       3    reserved, 0
///  84       4    layers
///  88       4    KV heads
///  92       4    head dim
///  96       4    KV bytes per block
/// 100       4    channel count C
/// 104     ...    C times: u16 name byte count, UTF-8 name, u32 row bytes
///         ...    token ids: token count times int32
///   H       P    payload: KV of every layer, then every channel's rows (PayloadCopier's layout)
/// H+P      16    XxHash128 of bytes [0, H+P), as a UInt128
/// </code>
/// <para>The payload is always the whole block; a partial block's slots past its token count carry no data.</para>
/// </remarks>
public sealed class PayloadCodec
{
    /// <summary>The header format this codec writes and reads.</summary>
    public const ushort FormatVersion = 1;

    /// <summary>Bytes of the header before the channel table.</summary>
    public const int FixedHeaderBytes = 104;

    public const int ChecksumBytes = 16;

    private const uint KeyedFlag = 1;

    private static ReadOnlySpan<byte> Magic => "RRBLK\0\r\n"u8;

    private readonly byte[] _channelTable;

    public PayloadCodec(PayloadLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        Layout = layout;
        _channelTable = EncodeChannelTable(layout.Channels);
    }

    public PayloadLayout Layout { get; }

    /// <summary>Bytes of the header of a value holding <paramref name="tokenCount"/> tokens.</summary>
    public int HeaderBytes(int tokenCount) => FixedHeaderBytes + _channelTable.Length + (tokenCount * sizeof(int));

    /// <summary>Bytes of a whole encoded value holding <paramref name="tokenCount"/> tokens.</summary>
    public int EncodedLength(int tokenCount) => HeaderBytes(tokenCount) + Layout.PayloadBytes + ChecksumBytes;

    /// <summary>Where the payload sits in a value of <paramref name="tokenCount"/> tokens, so it can be copied in place before <see cref="Seal"/>.</summary>
    public Range PayloadRange(int tokenCount)
    {
        var start = HeaderBytes(tokenCount);
        return start..(start + Layout.PayloadBytes);
    }

    /// <summary>Writes a whole value into <paramref name="destination"/> and returns its length.</summary>
    /// <exception cref="ArgumentException">Token count, payload size or destination size is wrong.</exception>
    public int Encode(PayloadHeader header, ReadOnlySpan<int> tokenIds, ReadOnlySpan<byte> payload, Span<byte> destination)
    {
        if (payload.Length != Layout.PayloadBytes)
        {
            throw new ArgumentException($"a payload of this layout has {Layout.PayloadBytes} bytes, not {payload.Length}", nameof(payload));
        }
        var length = CheckedLength(header, tokenIds.Length, destination.Length);
        payload.CopyTo(destination[PayloadRange(tokenIds.Length)]);
        Seal(header, tokenIds, destination[..length]);
        return length;
    }

    /// <summary>
    /// Writes the header and the checksum around a payload already copied to <c>value[PayloadRange(tokenIds.Length)]</c>.
    /// <paramref name="value"/> must be exactly <see cref="EncodedLength"/> long.
    /// </summary>
    public void Seal(PayloadHeader header, ReadOnlySpan<int> tokenIds, Span<byte> value)
    {
        var length = CheckedLength(header, tokenIds.Length, value.Length);
        if (value.Length != length)
        {
            throw new ArgumentException($"a value of {tokenIds.Length} tokens has {length} bytes, not {value.Length}", nameof(value));
        }
        var headerBytes = HeaderBytes(tokenIds.Length);
        Magic.CopyTo(value);
        BinaryPrimitives.WriteUInt16LittleEndian(value[8..], FormatVersion);
        BinaryPrimitives.WriteUInt16LittleEndian(value[10..], ModelFingerprint.PayloadLayoutVersion);
        BinaryPrimitives.WriteInt32LittleEndian(value[12..], headerBytes);
        BinaryPrimitives.WriteInt32LittleEndian(value[16..], Layout.PayloadBytes);
        BinaryPrimitives.WriteUInt32LittleEndian(value[20..], header.Key.HasValue ? KeyedFlag : 0);
        BinaryPrimitives.WriteUInt128LittleEndian(value[24..], header.Fingerprint);
        BinaryPrimitives.WriteUInt128LittleEndian(value[40..], header.Key?.Value ?? UInt128.Zero);
        BinaryPrimitives.WriteUInt128LittleEndian(value[56..], header.Parent.Value);
        BinaryPrimitives.WriteInt32LittleEndian(value[72..], Layout.BlockSize);
        BinaryPrimitives.WriteInt32LittleEndian(value[76..], tokenIds.Length);
        value[80] = DTypeCode(Layout.KvDType);
        value.Slice(81, 3).Clear();
        BinaryPrimitives.WriteInt32LittleEndian(value[84..], Layout.NumLayers);
        BinaryPrimitives.WriteInt32LittleEndian(value[88..], Layout.NumKvHeads);
        BinaryPrimitives.WriteInt32LittleEndian(value[92..], Layout.HeadDim);
        BinaryPrimitives.WriteInt32LittleEndian(value[96..], Layout.KvBytesPerBlock);
        BinaryPrimitives.WriteInt32LittleEndian(value[100..], Layout.Channels.Count);
        _channelTable.CopyTo(value[FixedHeaderBytes..]);
        var tokens = value[(FixedHeaderBytes + _channelTable.Length)..headerBytes];
        for (var i = 0; i < tokenIds.Length; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(tokens[(i * sizeof(int))..], tokenIds[i]);
        }
        var checksummed = headerBytes + Layout.PayloadBytes;
        BinaryPrimitives.WriteUInt128LittleEndian(value[checksummed..], XxHash128.HashToUInt128(value[..checksummed]));
    }

    /// <summary>
    /// Checks a value's framing, checksum and layout against this codec's, and on <see cref="PayloadCodecStatus.Ok"/>
    /// returns views of its header, token ids and payload. Identity (fingerprint, key, parent, tokens) is the caller's
    /// to check, or use <see cref="Verify"/>.
    /// </summary>
    public PayloadCodecStatus TryDecode(ReadOnlySpan<byte> value, out DecodedPayload decoded)
    {
        decoded = default;
        if (value.Length < FixedHeaderBytes + ChecksumBytes)
        {
            return value.Length >= Magic.Length && !value.StartsWith(Magic) ? PayloadCodecStatus.BadMagic : PayloadCodecStatus.Truncated;
        }
        if (!value.StartsWith(Magic))
        {
            return PayloadCodecStatus.BadMagic;
        }
        if (BinaryPrimitives.ReadUInt16LittleEndian(value[8..]) != FormatVersion)
        {
            return PayloadCodecStatus.UnsupportedFormatVersion;
        }
        var headerBytes = BinaryPrimitives.ReadInt32LittleEndian(value[12..]);
        var payloadBytes = BinaryPrimitives.ReadInt32LittleEndian(value[16..]);
        if (headerBytes < FixedHeaderBytes || payloadBytes < 0)
        {
            return PayloadCodecStatus.MalformedHeader;
        }
        var length = (long)headerBytes + payloadBytes + ChecksumBytes;
        if (length > value.Length)
        {
            return PayloadCodecStatus.Truncated;
        }
        if (length < value.Length)
        {
            return PayloadCodecStatus.LengthMismatch;
        }
        var checksummed = headerBytes + payloadBytes;
        if (BinaryPrimitives.ReadUInt128LittleEndian(value[checksummed..]) != XxHash128.HashToUInt128(value[..checksummed]))
        {
            return PayloadCodecStatus.ChecksumMismatch;
        }
        if (BinaryPrimitives.ReadUInt16LittleEndian(value[10..]) != ModelFingerprint.PayloadLayoutVersion)
        {
            return PayloadCodecStatus.LayoutVersionMismatch;
        }
        var status = CheckLayout(value, headerBytes, payloadBytes, out var tokenCount, out var keyed);
        if (status != PayloadCodecStatus.Ok)
        {
            return status;
        }
        var header = new PayloadHeader(
            BinaryPrimitives.ReadUInt128LittleEndian(value[24..]),
            keyed ? new BlockKey(BinaryPrimitives.ReadUInt128LittleEndian(value[40..])) : null,
            new BlockKey(BinaryPrimitives.ReadUInt128LittleEndian(value[56..])));
        var tokensStart = headerBytes - (tokenCount * sizeof(int));
        decoded = new DecodedPayload(header, value[tokensStart..headerBytes], value.Slice(headerBytes, payloadBytes));
        return PayloadCodecStatus.Ok;
    }

    /// <summary>
    /// Decodes a value expected to be the keyed block <paramref name="key"/> after <paramref name="parent"/> holding
    /// <paramref name="tokenIds"/>, computed by the model <paramref name="fingerprint"/>: framing, checksum, layout and
    /// every identity field must match. On <see cref="PayloadCodecStatus.Ok"/>, <paramref name="payload"/> is the
    /// block's payload, ready for <see cref="PayloadCopier.HostToDevice(ReadOnlySpan{byte}, int)"/>.
    /// </summary>
    public PayloadCodecStatus Verify(ReadOnlySpan<byte> value, UInt128 fingerprint, BlockKey key, BlockKey parent, ReadOnlySpan<int> tokenIds, out ReadOnlySpan<byte> payload) =>
        VerifyIdentity(value, fingerprint, key, parent, tokenIds, out payload);

    /// <summary>
    /// Decodes a value expected to be a partial (unkeyed) block after <paramref name="parent"/> holding exactly
    /// <paramref name="tokenIds"/> (fewer than a block, as a request's last prompt block travels): framing, checksum,
    /// layout, fingerprint, parent and tokens must match, and the value must carry no key
    /// (<see cref="PayloadCodecStatus.KeyMismatch"/> otherwise).
    /// </summary>
    public PayloadCodecStatus VerifyPartial(ReadOnlySpan<byte> value, UInt128 fingerprint, BlockKey parent, ReadOnlySpan<int> tokenIds, out ReadOnlySpan<byte> payload) =>
        VerifyIdentity(value, fingerprint, null, parent, tokenIds, out payload);

    private PayloadCodecStatus VerifyIdentity(ReadOnlySpan<byte> value, UInt128 fingerprint, BlockKey? key, BlockKey parent, ReadOnlySpan<int> tokenIds, out ReadOnlySpan<byte> payload)
    {
        payload = default;
        var status = TryDecode(value, out var decoded);
        if (status != PayloadCodecStatus.Ok)
        {
            return status;
        }
        if (decoded.Header.Fingerprint != fingerprint)
        {
            return PayloadCodecStatus.FingerprintMismatch;
        }
        if (key is { } expectedKey)
        {
            if (decoded.Header.Key is not { } storedKey)
            {
                return PayloadCodecStatus.NotKeyed;
            }
            if (storedKey != expectedKey)
            {
                return PayloadCodecStatus.KeyMismatch;
            }
        }
        else if (decoded.Header.Key.HasValue)
        {
            return PayloadCodecStatus.KeyMismatch;
        }
        if (decoded.Header.Parent != parent)
        {
            return PayloadCodecStatus.ParentMismatch;
        }
        if (decoded.TokenCount != tokenIds.Length)
        {
            return PayloadCodecStatus.TokenMismatch;
        }
        for (var i = 0; i < tokenIds.Length; i++)
        {
            if (decoded.TokenId(i) != tokenIds[i])
            {
                return PayloadCodecStatus.TokenMismatch;
            }
        }
        payload = decoded.Payload;
        return PayloadCodecStatus.Ok;
    }

    private PayloadCodecStatus CheckLayout(ReadOnlySpan<byte> value, int headerBytes, int payloadBytes, out int tokenCount, out bool keyed)
    {
        var flags = BinaryPrimitives.ReadUInt32LittleEndian(value[20..]);
        var blockSize = BinaryPrimitives.ReadInt32LittleEndian(value[72..]);
        tokenCount = BinaryPrimitives.ReadInt32LittleEndian(value[76..]);
        keyed = (flags & KeyedFlag) != 0;
        if ((flags & ~KeyedFlag) != 0 || value[81] != 0 || value[82] != 0 || value[83] != 0
            || blockSize <= 0 || tokenCount <= 0 || tokenCount > blockSize || (keyed && tokenCount != blockSize))
        {
            return PayloadCodecStatus.MalformedHeader;
        }
        var channelCount = BinaryPrimitives.ReadInt32LittleEndian(value[100..]);
        var tableBytes = ChannelTableBytes(value[FixedHeaderBytes..headerBytes], channelCount);
        if (tableBytes < 0 || FixedHeaderBytes + tableBytes + ((long)tokenCount * sizeof(int)) != headerBytes)
        {
            return PayloadCodecStatus.MalformedHeader;
        }
        if (blockSize != Layout.BlockSize)
        {
            return PayloadCodecStatus.BlockSizeMismatch;
        }
        if (value[80] != DTypeCode(Layout.KvDType)
            || BinaryPrimitives.ReadInt32LittleEndian(value[84..]) != Layout.NumLayers
            || BinaryPrimitives.ReadInt32LittleEndian(value[88..]) != Layout.NumKvHeads
            || BinaryPrimitives.ReadInt32LittleEndian(value[92..]) != Layout.HeadDim
            || BinaryPrimitives.ReadInt32LittleEndian(value[96..]) != Layout.KvBytesPerBlock)
        {
            return PayloadCodecStatus.KvLayoutMismatch;
        }
        if (channelCount != Layout.Channels.Count || !value.Slice(FixedHeaderBytes, tableBytes).SequenceEqual(_channelTable))
        {
            return PayloadCodecStatus.ChannelTableMismatch;
        }
        return payloadBytes == Layout.PayloadBytes ? PayloadCodecStatus.Ok : PayloadCodecStatus.MalformedHeader;
    }

    /// <summary>Bytes of a well-formed table of <paramref name="count"/> channels at the start of <paramref name="span"/>, or -1.</summary>
    private static int ChannelTableBytes(ReadOnlySpan<byte> span, int count)
    {
        if (count < 0 || count > span.Length)
        {
            return -1;
        }
        var offset = 0;
        for (var i = 0; i < count; i++)
        {
            if (span.Length - offset < sizeof(ushort))
            {
                return -1;
            }
            var nameBytes = BinaryPrimitives.ReadUInt16LittleEndian(span[offset..]);
            offset += sizeof(ushort);
            if (nameBytes == 0 || span.Length - offset < nameBytes + sizeof(uint))
            {
                return -1;
            }
            offset += nameBytes + sizeof(uint);
        }
        return offset;
    }

    private int CheckedLength(PayloadHeader header, int tokenCount, int available)
    {
        if (tokenCount < 1 || tokenCount > Layout.BlockSize)
        {
            throw new ArgumentException($"a block value holds 1..{Layout.BlockSize} tokens, not {tokenCount}", "tokenIds");
        }
        if (header.Key.HasValue && tokenCount != Layout.BlockSize)
        {
            throw new ArgumentException($"a keyed block holds exactly {Layout.BlockSize} tokens, not {tokenCount}", "tokenIds");
        }
        var length = EncodedLength(tokenCount);
        if (available < length)
        {
            throw new ArgumentException($"the value needs {length} bytes, the destination has {available}", "destination");
        }
        return length;
    }

    private static byte[] EncodeChannelTable(IReadOnlyList<ChannelLayout> channels)
    {
        var table = new List<byte>();
        Span<byte> number = stackalloc byte[sizeof(uint)];
        foreach (var channel in channels)
        {
            var name = Encoding.UTF8.GetBytes(channel.Name);
            if (name.Length > ushort.MaxValue)
            {
                throw new ArgumentException($"channel name '{channel.Name[..32]}...' is longer than {ushort.MaxValue} bytes", nameof(channels));
            }
            BinaryPrimitives.WriteUInt16LittleEndian(number, (ushort)name.Length);
            table.AddRange(number[..sizeof(ushort)]);
            table.AddRange(name);
            BinaryPrimitives.WriteUInt32LittleEndian(number, (uint)channel.RowBytes);
            table.AddRange(number);
        }
        return [.. table];
    }

    private static byte DTypeCode(TensorDType dtype) => dtype switch
    {
        TensorDType.F32 => 0,
        TensorDType.F16 => 1,
        TensorDType.BF16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown KV dtype"),
    };
}
