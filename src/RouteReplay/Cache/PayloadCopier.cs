using RouteReplay.Backends;

namespace RouteReplay.Cache;

/// <summary>
/// Moves a block's whole payload between the device pool and a host buffer: the KV of every layer, then every
/// channel's rows in registration order. Every tier move (swap, demotion, promotion) goes through here, so routing
/// and any other channel can never be left behind.
/// </summary>
public sealed class PayloadCopier
{
    private readonly IModelBackend _backend;
    private readonly BlockChannel[] _channels;

    public PayloadCopier(IModelBackend backend, IReadOnlyList<BlockChannel> channels)
    {
        _backend = backend;
        _channels = [.. channels];
        PayloadBytes = backend.KvBytesPerBlock;
        foreach (var channel in channels)
        {
            PayloadBytes += channel.BlockSize * channel.RowBytes;
        }
    }

    /// <summary>Bytes of one block's payload.</summary>
    public int PayloadBytes { get; }

    /// <summary>Bytes of the payload that the routing channel adds.</summary>
    public int RoutingBytes => _channels.OfType<RoutingChannel>().Sum(c => c.BlockSize * c.RowBytes);

    public void DeviceToHost(int deviceBlock, Span<byte> payload)
    {
        var kv = _backend.KvBytesPerBlock;
        _backend.ReadBlockKv(deviceBlock, payload[..kv]);
        var offset = kv;
        foreach (var channel in _channels)
        {
            var rows = channel.BlockRows(deviceBlock);
            rows.CopyTo(payload[offset..]);
            offset += rows.Length;
        }
    }

    public void HostToDevice(ReadOnlySpan<byte> payload, int deviceBlock)
    {
        var kv = _backend.KvBytesPerBlock;
        _backend.WriteBlockKv(deviceBlock, payload[..kv]);
        var offset = kv;
        foreach (var channel in _channels)
        {
            var rows = channel.BlockRows(deviceBlock);
            payload.Slice(offset, rows.Length).CopyTo(rows);
            offset += rows.Length;
        }
    }
}
