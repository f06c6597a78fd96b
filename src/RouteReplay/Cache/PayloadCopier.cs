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
    private readonly int[] _channelOffsets;

    public PayloadCopier(IModelBackend backend, IReadOnlyList<BlockChannel> channels)
    {
        _backend = backend;
        _channels = [.. channels];
        _channelOffsets = new int[_channels.Length];
        PayloadBytes = backend.KvBytesPerBlock;
        for (var c = 0; c < _channels.Length; c++)
        {
            _channelOffsets[c] = PayloadBytes;
            PayloadBytes += _channels[c].BlockSize * _channels[c].RowBytes;
        }
    }

    /// <summary>Bytes of one block's payload.</summary>
    public int PayloadBytes { get; }

    /// <summary>Bytes of the payload that the routing channel adds.</summary>
    public int RoutingBytes => _channels.OfType<RoutingChannel>().Sum(c => c.BlockSize * c.RowBytes);

    public void DeviceToHost(int deviceBlock, Span<byte> payload)
    {
        _backend.ReadBlockKv(deviceBlock, payload[.._backend.KvBytesPerBlock]);
        for (var c = 0; c < _channels.Length; c++)
        {
            _channels[c].BlockRows(deviceBlock).CopyTo(payload[_channelOffsets[c]..]);
        }
    }

    public void HostToDevice(ReadOnlySpan<byte> payload, int deviceBlock)
    {
        _backend.WriteBlockKv(deviceBlock, payload[.._backend.KvBytesPerBlock]);
        for (var c = 0; c < _channels.Length; c++)
        {
            var rows = _channels[c].BlockRows(deviceBlock);
            payload.Slice(_channelOffsets[c], rows.Length).CopyTo(rows);
        }
    }

    /// <summary>
    /// XxHash128 over every channel's rows of a device block, in registration order (not its KV): two blocks with equal
    /// digests hold the same routing and other channel rows. A prefill/decode transfer uses it to tell whether the
    /// decode engine's cached copy of a prompt block holds the rows the prefill engine computed.
    /// </summary>
    public UInt128 RowsDigest(int deviceBlock)
    {
        var hash = new System.IO.Hashing.XxHash128();
        foreach (var channel in _channels)
        {
            hash.Append(channel.BlockRows(deviceBlock));
        }
        return hash.GetCurrentHashAsUInt128();
    }

    /// <summary>The rows of <paramref name="channel"/> within a host payload, laid out as <see cref="DeviceToHost"/> writes them.</summary>
    /// <exception cref="ArgumentException">The channel is not one of this copier's.</exception>
    public ReadOnlySpan<byte> ChannelRows(ReadOnlySpan<byte> payload, BlockChannel channel)
    {
        var c = Array.IndexOf(_channels, channel);
        if (c < 0)
        {
            throw new ArgumentException($"channel '{channel?.Name}' is not part of the payload", nameof(channel));
        }
        return payload.Slice(_channelOffsets[c], channel.BlockSize * channel.RowBytes);
    }
}
