using System.Buffers.Binary;
using System.IO.Hashing;
using CsCheck;
using RouteReplay.Cache;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Tests.Cache;

/// <summary>
/// The payload codec: values round-trip; a change to any header field is caught by the checksum, and, when the
/// checksum is recomputed to match, by the field's own check; truncated, extended and foreign values never decode.
/// </summary>
public sealed class PayloadCodecTests
{
    private const int BlockSize = 4;

    private static readonly PayloadLayout Layout = new(BlockSize, TensorDType.F32, 2, 1, 4, 2 * 2 * BlockSize * 4 * sizeof(float), [new("routing", 6), new("token-position", 8)]);
    private static readonly PayloadCodec Codec = new(Layout);
    private static readonly UInt128 Model = new(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
    private static readonly int[] Tokens = [11, 22, 33, 44];
    private static readonly BlockKey Parent = new(new UInt128(7, 8));
    private static readonly BlockKey Key = BlockKey.Chain(Parent, Tokens);

    /// <summary>Offsets of the header's fields in a value of <see cref="Tokens"/> (see <see cref="PayloadCodec"/>).</summary>
    private static int ChannelTable => PayloadCodec.FixedHeaderBytes;

    private static int TokenIds => ChannelTable + (2 + 7 + 4) + (2 + 14 + 4);

    private static byte[] Payload()
    {
        var payload = new byte[Layout.PayloadBytes];
        new Random(5).NextBytes(payload);
        return payload;
    }

    private static byte[] Encode(PayloadHeader? header = null, int[]? tokens = null, PayloadCodec? codec = null, byte[]? payload = null)
    {
        codec ??= Codec;
        tokens ??= Tokens;
        var value = new byte[codec.EncodedLength(tokens.Length)];
        Assert.Equal(value.Length, codec.Encode(header ?? new PayloadHeader(Model, Key, Parent), tokens, payload ?? Payload(), value));
        return value;
    }

    private static PayloadCodecStatus Verify(byte[] value, PayloadCodec? codec = null) =>
        (codec ?? Codec).Verify(value, Model, Key, Parent, Tokens, out _);

    /// <summary>Recomputes the checksum after a deliberate edit, so the edited field's own check must catch it.</summary>
    private static byte[] Resealed(byte[] value)
    {
        BinaryPrimitives.WriteUInt128LittleEndian(value.AsSpan(value.Length - 16), XxHash128.HashToUInt128(value.AsSpan(0, value.Length - 16)));
        return value;
    }

    [Fact]
    public void A_keyed_block_round_trips_with_every_field()
    {
        var payload = Payload();
        var value = Encode(payload: payload);
        Assert.Equal(PayloadCodecStatus.Ok, Codec.TryDecode(value, out var decoded));
        Assert.Equal(new PayloadHeader(Model, Key, Parent), decoded.Header);
        Assert.Equal(BlockSize, decoded.TokenCount);
        var tokens = new int[decoded.TokenCount];
        decoded.CopyTokenIds(tokens);
        Assert.Equal(Tokens, tokens);
        Assert.Equal(payload, decoded.Payload.ToArray());
        Assert.Equal(PayloadCodecStatus.Ok, Codec.Verify(value, Model, Key, Parent, Tokens, out var verified));
        Assert.Equal(payload, verified.ToArray());
        Assert.Equal(Codec.EncodedLength(BlockSize), value.Length);
        Assert.Equal("RRBLK\0\r\n"u8.ToArray(), value[..8]);
        Assert.Equal(payload, value[Codec.PayloadRange(BlockSize)]);
    }

    [Fact]
    public void A_partial_unkeyed_block_round_trips_for_transfer_but_never_verifies_as_a_stored_block()
    {
        int[] partial = [5, 6];
        var payload = Payload();
        var value = Encode(new PayloadHeader(Model, null, Key), partial, payload: payload);
        Assert.Equal(PayloadCodecStatus.Ok, Codec.TryDecode(value, out var decoded));
        Assert.Null(decoded.Header.Key);
        Assert.Equal(Key, decoded.Header.Parent);
        Assert.Equal(2, decoded.TokenCount);
        Assert.Equal(5, decoded.TokenId(0));
        Assert.Equal(6, decoded.TokenId(1));
        Assert.Equal(payload, decoded.Payload.ToArray());
        Assert.Equal(PayloadCodecStatus.NotKeyed, Codec.Verify(value, Model, Key, Key, partial, out _));
    }

    [Fact]
    public void Seal_around_a_payload_copied_in_place_equals_encode()
    {
        var payload = Payload();
        var sealedValue = new byte[Codec.EncodedLength(BlockSize)];
        payload.CopyTo(sealedValue.AsSpan(Codec.PayloadRange(BlockSize)));
        Codec.Seal(new PayloadHeader(Model, Key, Parent), Tokens, sealedValue);
        Assert.Equal(Encode(payload: payload), sealedValue);
    }

    [Fact]
    public void Encoding_rejects_inconsistent_input()
    {
        var destination = new byte[Codec.EncodedLength(BlockSize)];
        Assert.Throws<ArgumentException>(() => Codec.Encode(new PayloadHeader(Model, Key, Parent), [1, 2], Payload(), destination));
        Assert.Throws<ArgumentException>(() => Codec.Encode(new PayloadHeader(Model, Key, Parent), [1, 2, 3, 4, 5], Payload(), new byte[1000]));
        Assert.Throws<ArgumentException>(() => Codec.Encode(new PayloadHeader(Model, null, Parent), [], Payload(), destination));
        Assert.Throws<ArgumentException>(() => Codec.Encode(new PayloadHeader(Model, Key, Parent), Tokens, new byte[Layout.PayloadBytes - 1], destination));
        Assert.Throws<ArgumentException>(() => Codec.Encode(new PayloadHeader(Model, Key, Parent), Tokens, Payload(), new byte[destination.Length - 1]));
    }

    /// <summary>Each header field, an edit of it, and what the edit must be reported as once the checksum matches again.</summary>
    public static TheoryData<string, int, byte, PayloadCodecStatus> FieldEdits() => new()
    {
        { "magic", 0, 1, PayloadCodecStatus.BadMagic },
        { "magic last byte", 7, 1, PayloadCodecStatus.BadMagic },
        { "format version", 8, 1, PayloadCodecStatus.UnsupportedFormatVersion },
        { "layout version", 10, 1, PayloadCodecStatus.LayoutVersionMismatch },
        { "header bytes", 12, 4, PayloadCodecStatus.Truncated },
        { "payload bytes", 16, 1, PayloadCodecStatus.Truncated },
        { "payload bytes high", 19, 0x80, PayloadCodecStatus.MalformedHeader },
        { "unknown flag", 20, 2, PayloadCodecStatus.MalformedHeader },
        { "keyed flag cleared", 20, 1, PayloadCodecStatus.NotKeyed },
        { "fingerprint low", 24, 1, PayloadCodecStatus.FingerprintMismatch },
        { "fingerprint high", 39, 0x40, PayloadCodecStatus.FingerprintMismatch },
        { "key", 40, 1, PayloadCodecStatus.KeyMismatch },
        { "key high", 55, 1, PayloadCodecStatus.KeyMismatch },
        { "parent", 56, 1, PayloadCodecStatus.ParentMismatch },
        { "parent high", 71, 1, PayloadCodecStatus.ParentMismatch },
        { "block size", 72, 1, PayloadCodecStatus.MalformedHeader },
        { "token count", 76, 1, PayloadCodecStatus.MalformedHeader },
        { "kv dtype", 80, 2, PayloadCodecStatus.KvLayoutMismatch },
        { "reserved", 81, 1, PayloadCodecStatus.MalformedHeader },
        { "layers", 84, 1, PayloadCodecStatus.KvLayoutMismatch },
        { "kv heads", 88, 2, PayloadCodecStatus.KvLayoutMismatch },
        { "head dim", 92, 1, PayloadCodecStatus.KvLayoutMismatch },
        { "kv bytes", 96, 4, PayloadCodecStatus.KvLayoutMismatch },
        { "channel count", 100, 1, PayloadCodecStatus.MalformedHeader },
        { "channel name length", ChannelTable, 1, PayloadCodecStatus.MalformedHeader },
        { "channel name", ChannelTable + 2, 1, PayloadCodecStatus.ChannelTableMismatch },
        { "channel row bytes", ChannelTable + 2 + 7, 1, PayloadCodecStatus.ChannelTableMismatch },
        { "second channel name", ChannelTable + 13 + 2 + 5, 1, PayloadCodecStatus.ChannelTableMismatch },
        { "second channel row bytes", ChannelTable + 13 + 2 + 14, 8, PayloadCodecStatus.ChannelTableMismatch },
        { "first token id", TokenIds, 1, PayloadCodecStatus.TokenMismatch },
        { "last token id", TokenIds + 15, 1, PayloadCodecStatus.TokenMismatch },
    };

    [Theory]
    [MemberData(nameof(FieldEdits))]
    public void An_edited_header_field_is_caught_by_the_checksum_and_by_its_own_check(string field, int offset, byte xor, PayloadCodecStatus expected)
    {
        var value = Encode();
        value[offset] ^= xor;
        var first = Verify(value);
        Assert.True(first is PayloadCodecStatus.ChecksumMismatch or PayloadCodecStatus.BadMagic or PayloadCodecStatus.UnsupportedFormatVersion
            or PayloadCodecStatus.Truncated or PayloadCodecStatus.MalformedHeader, $"{field}: {first}");
        Assert.Equal(expected, Verify(Resealed(value)));
    }

    [Fact]
    public void An_edited_payload_or_checksum_byte_fails_the_checksum()
    {
        var value = Encode();
        var payloadAt = Codec.PayloadRange(BlockSize).Start.Value;
        foreach (var offset in new[] { payloadAt, payloadAt + Layout.KvBytesPerBlock, value.Length - 17, value.Length - 16, value.Length - 1 })
        {
            var edited = (byte[])value.Clone();
            edited[offset] ^= 0x10;
            Assert.Equal(PayloadCodecStatus.ChecksumMismatch, Verify(edited));
        }
    }

    [Fact]
    public void Every_truncation_and_any_trailing_byte_is_detected()
    {
        var value = Encode();
        for (var length = 0; length < value.Length; length++)
        {
            Assert.Equal(PayloadCodecStatus.Truncated, Codec.TryDecode(value.AsSpan(0, length), out _));
        }
        Assert.Equal(PayloadCodecStatus.LengthMismatch, Codec.TryDecode([.. value, 0], out _));
        Assert.Equal(PayloadCodecStatus.BadMagic, Codec.TryDecode(new byte[200], out _));
    }

    [Fact]
    public void A_value_of_another_layout_or_model_is_never_accepted()
    {
        var value = Encode();
        PayloadLayout Variant(TensorDType dtype, int kvBytes, params ChannelLayout[] channels) => new(BlockSize, dtype, 2, 1, 4, kvBytes, channels);
        Assert.Equal(PayloadCodecStatus.ChannelTableMismatch, Verify(value, new PayloadCodec(Variant(TensorDType.F32, Layout.KvBytesPerBlock, new("routing", 6), new("token-position", 8), new("gates", 4)))));
        Assert.Equal(PayloadCodecStatus.ChannelTableMismatch, Verify(value, new PayloadCodec(Variant(TensorDType.F32, Layout.KvBytesPerBlock, new("token-position", 8), new("routing", 6)))));
        Assert.Equal(PayloadCodecStatus.ChannelTableMismatch, Verify(value, new PayloadCodec(Variant(TensorDType.F32, Layout.KvBytesPerBlock, new("routing", 12), new("token-position", 2)))));
        Assert.Equal(PayloadCodecStatus.KvLayoutMismatch, Verify(value, new PayloadCodec(Variant(TensorDType.BF16, Layout.KvBytesPerBlock / 2, Layout.Channels.ToArray()))));
        Assert.Equal(PayloadCodecStatus.BlockSizeMismatch, Verify(Encode(new PayloadHeader(Model, null, Parent), [1, 2]), new PayloadCodec(new PayloadLayout(8, TensorDType.F32, 2, 1, 4, Layout.KvBytesPerBlock * 2, Layout.Channels))));
        Assert.Equal(PayloadCodecStatus.FingerprintMismatch, Codec.Verify(value, Model + 1, Key, Parent, Tokens, out _));
        Assert.Equal(PayloadCodecStatus.KeyMismatch, Codec.Verify(value, Model, BlockKey.Chain(Key, Tokens), Parent, Tokens, out _));
        Assert.Equal(PayloadCodecStatus.ParentMismatch, Codec.Verify(value, Model, Key, Key, Tokens, out _));
        Assert.Equal(PayloadCodecStatus.TokenMismatch, Codec.Verify(value, Model, Key, Parent, [11, 22, 33, 45], out _));
        Assert.Equal(PayloadCodecStatus.TokenMismatch, Codec.Verify(value, Model, Key, Parent, [11, 22, 33], out _));
    }

    [Fact]
    public void Any_single_byte_change_anywhere_is_detected()
    {
        var value = Encode();
        Gen.Select(Gen.Int[0, value.Length - 1], Gen.Byte[1, 255]).Sample((offset, xor) =>
        {
            var edited = (byte[])value.Clone();
            edited[offset] ^= xor;
            return Verify(edited) != PayloadCodecStatus.Ok && Codec.TryDecode(edited, out _) != PayloadCodecStatus.Ok;
        }, iter: 20_000);
    }
}
