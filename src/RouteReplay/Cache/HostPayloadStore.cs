namespace RouteReplay.Cache;

/// <summary>
/// Host memory for block payloads, in pinned segments of at most 1 GiB that are allocated on first use, so a large
/// swap space costs nothing until it is needed.
/// </summary>
internal sealed class HostPayloadStore
{
    private const long SegmentBytes = 1L << 30;
    private readonly byte[]?[] _segments;
    private readonly int _blocksPerSegment;

    public HostPayloadStore(int numBlocks, int payloadBytes)
    {
        PayloadBytes = payloadBytes;
        _blocksPerSegment = (int)Math.Max(1, SegmentBytes / payloadBytes);
        _segments = new byte[]?[(numBlocks + _blocksPerSegment - 1) / _blocksPerSegment];
        NumBlocks = numBlocks;
    }

    public int NumBlocks { get; }

    public int PayloadBytes { get; }

    public Span<byte> Payload(int block)
    {
        var segment = block / _blocksPerSegment;
        var blocksHere = Math.Min(_blocksPerSegment, NumBlocks - (segment * _blocksPerSegment));
        var bytes = _segments[segment] ??= GC.AllocateUninitializedArray<byte>(blocksHere * PayloadBytes, pinned: true);
        return bytes.AsSpan((block % _blocksPerSegment) * PayloadBytes, PayloadBytes);
    }
}
