using RouteReplay.Backends;

namespace RouteReplay.Cache;

/// <summary>
/// Host memory for block payloads, in segments of at most 1 GiB allocated on first use (by the backend, so a GPU
/// backend copies into them without staging), so a large swap space costs nothing until it is needed.
/// </summary>
internal sealed class HostPayloadStore : IDisposable
{
    private const long SegmentBytes = 1L << 30;
    private readonly HostBuffer?[] _segments;
    private readonly int _blocksPerSegment;
    private readonly Func<long, HostBuffer> _allocate;

    public HostPayloadStore(int numBlocks, int payloadBytes, Func<long, HostBuffer> allocate)
    {
        PayloadBytes = payloadBytes;
        _allocate = allocate;
        _blocksPerSegment = (int)Math.Max(1, SegmentBytes / payloadBytes);
        _segments = new HostBuffer?[(numBlocks + _blocksPerSegment - 1) / _blocksPerSegment];
        NumBlocks = numBlocks;
    }

    public int NumBlocks { get; }

    public int PayloadBytes { get; }

    public Span<byte> Payload(int block) => Segment(block).AsSpan<byte>(Offset(block), PayloadBytes);

    /// <summary>The address of the block's payload (its KV bytes first), for the backend's asynchronous copies.</summary>
    public nint Address(int block) => Segment(block).Address + (nint)Offset(block);

    public void Dispose()
    {
        foreach (var segment in _segments)
        {
            segment?.Dispose();
        }
    }

    private long Offset(int block) => (long)(block % _blocksPerSegment) * PayloadBytes;

    private HostBuffer Segment(int block)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)block, (uint)NumBlocks, nameof(block));
        var segment = block / _blocksPerSegment;
        var blocksHere = Math.Min(_blocksPerSegment, NumBlocks - (segment * _blocksPerSegment));
        return _segments[segment] ??= _allocate((long)blocksHere * PayloadBytes);
    }
}
