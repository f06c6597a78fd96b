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
    private nint[] _addresses = new nint[16];

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

    /// <summary>Host memory the backend copies payloads into without staging.</summary>
    public HostBuffer AllocateHostBuffer(long bytes) => _backend.AllocateHostBuffer(bytes);

    public void DeviceToHost(int deviceBlock, Span<byte> payload)
    {
        var kv = _backend.KvBytesPerBlock;
        _backend.ReadBlockKv(deviceBlock, payload[..kv]);
        CopyRowsOut(deviceBlock, payload[kv..]);
    }

    public void HostToDevice(ReadOnlySpan<byte> payload, int deviceBlock)
    {
        var kv = _backend.KvBytesPerBlock;
        _backend.WriteBlockKv(deviceBlock, payload[..kv]);
        CopyRowsIn(payload[kv..], deviceBlock);
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
        var kv = _backend.KvBytesPerBlock;
        for (var i = 0; i < deviceBlocks.Length; i++)
        {
            CopyRowsOut(deviceBlocks[i], store.Payload(hostBlocks[i])[kv..]);
        }
    }

    /// <summary>Queues the KV of each host block into its device block; copies the rows now.</summary>
    internal void HostToDeviceAsync(HostPayloadStore store, ReadOnlySpan<int> hostBlocks, ReadOnlySpan<int> deviceBlocks)
    {
        var addresses = Addresses(store, hostBlocks);
        _backend.CopyBlocksToDevice(addresses, deviceBlocks);
        var kv = _backend.KvBytesPerBlock;
        for (var i = 0; i < deviceBlocks.Length; i++)
        {
            CopyRowsIn(store.Payload(hostBlocks[i])[kv..], deviceBlocks[i]);
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

    private void CopyRowsOut(int deviceBlock, Span<byte> destination)
    {
        var offset = 0;
        foreach (var channel in _channels)
        {
            var rows = channel.BlockRows(deviceBlock);
            rows.CopyTo(destination[offset..]);
            offset += rows.Length;
        }
    }

    private void CopyRowsIn(ReadOnlySpan<byte> source, int deviceBlock)
    {
        var offset = 0;
        foreach (var channel in _channels)
        {
            var rows = channel.BlockRows(deviceBlock);
            source.Slice(offset, rows.Length).CopyTo(rows);
            offset += rows.Length;
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
