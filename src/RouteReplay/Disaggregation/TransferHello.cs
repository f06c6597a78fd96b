using System.Buffers;

namespace RouteReplay.Disaggregation;

/// <summary>
/// The body of a <see cref="TransferFrame.Hello"/>: the protocol version, the decode server's cluster-key tag of the
/// transfer (empty without a key) and its <see cref="PeerDescription"/>, encoded.
/// </summary>
internal sealed record TransferHello(ushort Version, byte[] Tag, byte[] Description)
{
    public static byte[] Encode(byte[] tag, byte[] description) =>
        [.. new BodyWriter().UInt16(FrameReader.ProtocolVersion).Byte((byte)tag.Length).WrittenSpan, .. tag, .. description];

    /// <summary>The hello, copied out of the frame; only the version when it is another version's.</summary>
    /// <exception cref="InvalidDataException">The body is truncated or its tag too long.</exception>
    public static TransferHello Decode(ReadOnlySequence<byte> body)
    {
        var reader = new BodyReader(body, "hello");
        var version = reader.UInt16();
        if (version != FrameReader.ProtocolVersion)
        {
            return new TransferHello(version, [], []);
        }
        var tagLength = reader.Byte();
        if (tagLength is not (0 or ClusterKey.TagBytes) || reader.Remaining < tagLength)
        {
            throw new InvalidDataException($"the peer's hello carries a tag of {tagLength} bytes");
        }
        var rest = reader.Rest();
        return new TransferHello(version, rest.Slice(0, tagLength).ToArray(), rest.Slice(tagLength).ToArray());
    }
}
