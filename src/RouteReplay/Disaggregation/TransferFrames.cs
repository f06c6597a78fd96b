using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text;

namespace RouteReplay.Disaggregation;

/// <summary>
/// The transfer protocol between a decode server (the client) and a prefill server, over one TCP connection per
/// request. Every frame is <c>u32 length</c> (little-endian, of what follows), <c>u8 type</c>, then the body:
/// <code>
/// decode -> prefill   Hello(version, cluster-key tag, description)
///                     Request(prompt, sampling, held blocks' row digests, heartbeat interval), sent with the hello
///                                                 prefill -> decode   Accepted | Refused(reason)
///                                                 prefill -> decode   Agreed(kept held blocks)
///                                                                     Block(index, encoded value) ...   as chunks finish
///                                                                     Choice(choice, first token, logprob, sampler state, encoded last block) ...
///                                                                     Done(cached tokens)   | Error(reason) at any point
///                                                                     Heartbeat            whenever nothing else went out for an interval
/// decode -> prefill   Ack                         (the prefill server then releases the blocks it held)
/// </code>
/// Encoded values are <see cref="Cache.PayloadCodec"/>'s, so every block is checksummed and self-describing, and is
/// verified against the block the decode server expects before it is used. The prefill server answers only once it
/// has read both the hello and the request: with a <see cref="ClusterKey"/> it refuses a request whose tag (over the
/// description and the request) is not its key's.
/// </summary>
public enum TransferFrame : byte
{
    Hello = 1,
    Accepted = 2,
    Refused = 3,
    Request = 4,
    Agreed = 5,
    Block = 6,
    Choice = 7,
    Done = 8,
    Heartbeat = 9,
    Ack = 10,
    Error = 11,
}

/// <summary>A frame as read: its type and body, valid until the next read.</summary>
internal readonly record struct Frame(TransferFrame Type, ReadOnlySequence<byte> Body);

/// <summary>Reads frames from a pipe; a frame's body stays valid until the next <see cref="ReadAsync"/>.</summary>
internal sealed class FrameReader(PipeReader reader, int maxFrameBytes)
{
    /// <summary>The protocol's version, checked in the handshake.</summary>
    public const ushort ProtocolVersion = 2;

    private SequencePosition? _consumed;

    /// <summary>The next frame, or null when the peer closed the connection between frames.</summary>
    /// <exception cref="InvalidDataException">A frame is larger than allowed, or the stream ends inside one.</exception>
    public async ValueTask<Frame?> ReadAsync(CancellationToken cancellationToken)
    {
        if (_consumed is { } consumed)
        {
            reader.AdvanceTo(consumed);
            _consumed = null;
        }
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (buffer.Length >= sizeof(uint))
            {
                var length = ReadLength(buffer);
                if (length < 1 || length > maxFrameBytes)
                {
                    throw new InvalidDataException($"the peer sent a frame of {length} bytes (at most {maxFrameBytes} are allowed)");
                }
                if (buffer.Length >= sizeof(uint) + length)
                {
                    var frame = buffer.Slice(sizeof(uint), length);
                    _consumed = frame.End;
                    return new Frame((TransferFrame)frame.FirstSpan[0], frame.Slice(1));
                }
            }
            if (result.IsCompleted)
            {
                if (buffer.Length > 0)
                {
                    throw new InvalidDataException("the connection closed in the middle of a frame");
                }
                return null;
            }
            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static uint ReadLength(ReadOnlySequence<byte> buffer)
    {
        Span<byte> bytes = stackalloc byte[sizeof(uint)];
        buffer.Slice(0, sizeof(uint)).CopyTo(bytes);
        return BinaryPrimitives.ReadUInt32LittleEndian(bytes);
    }
}

/// <summary>
/// A connection's stream and its two pipes. Disposing closes the stream first (so a read still pending ends), then
/// completes both pipes, returning their pooled buffers.
/// </summary>
internal sealed class Connection(Stream stream) : IAsyncDisposable
{
    public PipeReader Reader { get; } = PipeReader.Create(stream);

    public PipeWriter Writer { get; } = PipeWriter.Create(stream);

    public async ValueTask DisposeAsync()
    {
        await stream.DisposeAsync().ConfigureAwait(false);
        foreach (var complete in new Func<ValueTask>[] { () => Reader.CompleteAsync(), () => Writer.CompleteAsync() })
        {
            try
            {
                await complete().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
            {
                // The connection is gone; completing only returns the buffers.
            }
        }
    }
}

/// <summary>Writes frames into a pipe (flushing is the caller's).</summary>
internal static class FrameWriter
{
    public static void Write(PipeWriter writer, TransferFrame type, ReadOnlySpan<byte> head = default, ReadOnlySpan<byte> tail = default)
    {
        var length = 1 + head.Length + tail.Length;
        var span = writer.GetSpan(sizeof(uint) + length);
        BinaryPrimitives.WriteUInt32LittleEndian(span, (uint)length);
        span[sizeof(uint)] = (byte)type;
        head.CopyTo(span[(sizeof(uint) + 1)..]);
        tail.CopyTo(span[(sizeof(uint) + 1 + head.Length)..]);
        writer.Advance(sizeof(uint) + length);
    }

    public static void WriteUInt32(PipeWriter writer, TransferFrame type, uint value, ReadOnlySpan<byte> tail = default)
    {
        Span<byte> head = stackalloc byte[sizeof(uint)];
        BinaryPrimitives.WriteUInt32LittleEndian(head, value);
        Write(writer, type, head, tail);
    }

    public static void WriteText(PipeWriter writer, TransferFrame type, string text) =>
        Write(writer, type, System.Text.Encoding.UTF8.GetBytes(text.Length > 4096 ? text[..4096] : text));
}

/// <summary>Little-endian reads over a frame body that name the frame when it is too short.</summary>
internal ref struct BodyReader(ReadOnlySequence<byte> body, string frame)
{
    private SequenceReader<byte> _reader = new(body);

    public readonly long Remaining => _reader.Remaining;

    public byte Byte() => _reader.TryRead(out var value) ? value : throw Short();

    public ushort UInt16() => _reader.TryReadLittleEndian(out short value) ? (ushort)value : throw Short();

    public int Int32() => _reader.TryReadLittleEndian(out int value) ? value : throw Short();

    public uint UInt32() => (uint)Int32();

    public ulong UInt64() => _reader.TryReadLittleEndian(out long value) ? (ulong)value : throw Short();

    public float Single() => BitConverter.Int32BitsToSingle(Int32());

    public UInt128 UInt128()
    {
        var low = UInt64();
        return ((UInt128)UInt64() << 64) | low;
    }

    public string Text()
    {
        var length = UInt16();
        if (_reader.Remaining < length)
        {
            throw Short();
        }
        var text = System.Text.Encoding.UTF8.GetString(_reader.UnreadSequence.Slice(0, length));
        _reader.Advance(length);
        return text;
    }

    /// <summary>The rest of the body.</summary>
    public ReadOnlySequence<byte> Rest() => _reader.UnreadSequence;

    private readonly InvalidDataException Short() => new($"the peer's {frame} frame is truncated");
}

/// <summary>Little-endian writes into a growing buffer, for frame heads.</summary>
internal sealed class BodyWriter
{
    private readonly ArrayBufferWriter<byte> _buffer = new(256);

    public ReadOnlySpan<byte> WrittenSpan => _buffer.WrittenSpan;

    public BodyWriter Byte(byte value)
    {
        _buffer.GetSpan(1)[0] = value;
        _buffer.Advance(1);
        return this;
    }

    public BodyWriter UInt16(ushort value)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(_buffer.GetSpan(2), value);
        _buffer.Advance(2);
        return this;
    }

    public BodyWriter Int32(int value)
    {
        BinaryPrimitives.WriteInt32LittleEndian(_buffer.GetSpan(4), value);
        _buffer.Advance(4);
        return this;
    }

    public BodyWriter UInt64(ulong value)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(_buffer.GetSpan(8), value);
        _buffer.Advance(8);
        return this;
    }

    public BodyWriter Single(float value) => Int32(BitConverter.SingleToInt32Bits(value));

    public BodyWriter UInt128(UInt128 value) => UInt64((ulong)value).UInt64((ulong)(value >> 64));

    public BodyWriter Text(string text)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        if (bytes.Length > ushort.MaxValue)
        {
            throw new ArgumentException($"a text field holds at most {ushort.MaxValue} bytes", nameof(text));
        }
        UInt16((ushort)bytes.Length);
        bytes.CopyTo(_buffer.GetSpan(bytes.Length));
        _buffer.Advance(bytes.Length);
        return this;
    }
}
