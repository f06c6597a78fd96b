using RouteReplay.Backends;

namespace RouteReplay.Cache;

/// <summary>
/// Moves a block's whole payload between the device pool and a host buffer: the KV of every layer, then every
/// channel's rows in registration order. Every tier move (swap, demotion, promotion) goes through here, so routing
/// and any other channel can never be left behind.
/// </summary>
/// <remarks>
/// The per-block and contiguous batched forms are complete on return and take any host memory. The host tier uses
/// the asynchronous batched forms: their KV copies are queued in the backend's order with forwards (so a block being
/// copied out is read before a later forward overwrites it, and a block being copied in is written before a later
/// forward reads it), the channel rows are copied at once (they live in host memory), and the host payloads' KV
/// bytes are valid after <see cref="Synchronize"/> or the next step.
/// </remarks>
public sealed class PayloadCopier
{
    private readonly IModelBackend _backend;
    private readonly BlockChannel[] _channels;
    private readonly int[] _channelOffsets;
    private nint[] _addresses = new nint[16];

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

    /// <summary>Host memory the backend copies payloads into without staging.</summary>
    public HostBuffer AllocateHostBuffer(long bytes) => _backend.AllocateHostBuffer(bytes);

    public void DeviceToHost(int deviceBlock, Span<byte> payload)
    {
        _backend.ReadBlockKv(deviceBlock, payload[.._backend.KvBytesPerBlock]);
        CopyRowsOut(deviceBlock, payload);
    }

    public void HostToDevice(ReadOnlySpan<byte> payload, int deviceBlock)
    {
        _backend.WriteBlockKv(deviceBlock, payload[.._backend.KvBytesPerBlock]);
        CopyRowsIn(payload, deviceBlock);
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

    /// <summary>The rows of <paramref name="channel"/> within a host payload, laid out as <see cref="DeviceToHost(int, Span{byte})"/> writes them.</summary>
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

    /// <summary>Copies the payloads of <paramref name="deviceBlocks"/> into <paramref name="payloads"/>, one after another.</summary>
    public void DeviceToHost(ReadOnlySpan<int> deviceBlocks, Span<byte> payloads)
    {
        RequireLength(payloads.Length, deviceBlocks.Length);
        for (var i = 0; i < deviceBlocks.Length; i++)
        {
            DeviceToHost(deviceBlocks[i], payloads.Slice(i * PayloadBytes, PayloadBytes));
        }
    }

    /// <summary>Copies consecutive payloads from <paramref name="payloads"/> into <paramref name="deviceBlocks"/>.</summary>
    public void HostToDevice(ReadOnlySpan<byte> payloads, ReadOnlySpan<int> deviceBlocks)
    {
        RequireLength(payloads.Length, deviceBlocks.Length);
        for (var i = 0; i < deviceBlocks.Length; i++)
        {
            HostToDevice(payloads.Slice(i * PayloadBytes, PayloadBytes), deviceBlocks[i]);
        }
    }

    /// <summary>Waits until every asynchronous copy has landed in host memory.</summary>
    public void Synchronize() => _backend.Synchronize();

    /// <summary>Queues the KV of each device block into its host block of <paramref name="store"/>; copies the rows now.</summary>
    internal void DeviceToHostAsync(ReadOnlySpan<int> deviceBlocks, HostPayloadStore store, ReadOnlySpan<int> hostBlocks)
    {
        var addresses = Addresses(store, hostBlocks);
        _backend.CopyBlocksToHost(deviceBlocks, addresses);
        for (var i = 0; i < deviceBlocks.Length; i++)
        {
            CopyRowsOut(deviceBlocks[i], store.Payload(hostBlocks[i]));
        }
    }

    /// <summary>Queues the KV of each host block into its device block; copies the rows now.</summary>
    internal void HostToDeviceAsync(HostPayloadStore store, ReadOnlySpan<int> hostBlocks, ReadOnlySpan<int> deviceBlocks)
    {
        var addresses = Addresses(store, hostBlocks);
        _backend.CopyBlocksToDevice(addresses, deviceBlocks);
        for (var i = 0; i < deviceBlocks.Length; i++)
        {
            CopyRowsIn(store.Payload(hostBlocks[i]), deviceBlocks[i]);
        }
    }

    private ReadOnlySpan<nint> Addresses(HostPayloadStore store, ReadOnlySpan<int> hostBlocks)
    {
        if (_addresses.Length < hostBlocks.Length)
        {
            _addresses = new nint[Math.Max(hostBlocks.Length, _addresses.Length * 2)];
        }
        for (var i = 0; i < hostBlocks.Length; i++)
        {
            _addresses[i] = store.Address(hostBlocks[i]);
        }
        return _addresses.AsSpan(0, hostBlocks.Length);
    }

    private void CopyRowsOut(int deviceBlock, Span<byte> payload)
    {
        for (var c = 0; c < _channels.Length; c++)
        {
            _channels[c].BlockRows(deviceBlock).CopyTo(payload[_channelOffsets[c]..]);
        }
    }

    private void CopyRowsIn(ReadOnlySpan<byte> payload, int deviceBlock)
    {
        for (var c = 0; c < _channels.Length; c++)
        {
            var rows = _channels[c].BlockRows(deviceBlock);
            payload.Slice(_channelOffsets[c], rows.Length).CopyTo(rows);
        }
    }

    private void RequireLength(int bytes, int blocks)
    {
        if (bytes < (long)blocks * PayloadBytes)
        {
            throw new ArgumentException($"{blocks} payloads of {PayloadBytes} bytes do not fit {bytes} bytes", "payloads");
        }
    }
}
