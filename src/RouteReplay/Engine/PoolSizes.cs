using System.Globalization;
using RouteReplay.Cache;

namespace RouteReplay.Engine;

/// <summary>The bytes one channel holds in host memory for every block of the device pool.</summary>
public readonly record struct ChannelSize(string Name, long Bytes);

/// <summary>
/// What each tier of the KV pool holds, for the startup log: the device KV cache (blocks, tokens, bytes), the host-side
/// channel rows of the same blocks (routing and any other channel), and the host tier (allocated as used).
/// </summary>
public sealed record PoolSizes(int BlockSize, int DeviceBlocks, long DeviceKvBytes, IReadOnlyList<ChannelSize> Channels, int HostBlocks, long HostBytes)
{
    public static PoolSizes Of(BlockPool pool, PayloadLayout layout, int hostBlocks)
    {
        ArgumentNullException.ThrowIfNull(pool);
        ArgumentNullException.ThrowIfNull(layout);
        return new PoolSizes(
            pool.BlockSize,
            pool.NumBlocks,
            (long)pool.NumBlocks * layout.KvBytesPerBlock,
            pool.Channels.Select(c => new ChannelSize(c.Name, c.TotalBytes)).ToArray(),
            hostBlocks,
            (long)hostBlocks * layout.PayloadBytes);
    }

    /// <summary>E.g. <c>KV pool: device 4,096 blocks of 16 tokens (65,536 tokens), 2.00 GiB; host channels routing 4.00 MiB; host tier ...</c>.</summary>
    public override string ToString()
    {
        var channels = string.Join(", ", Channels.Select(c => $"{c.Name} {Bytes(c.Bytes)}"));
        var host = HostBlocks > 0
            ? $"host tier {Count(HostBlocks)} blocks ({Count((long)HostBlocks * BlockSize)} tokens), {Bytes(HostBytes)} (allocated as used)"
            : "host tier off";
        return $"KV pool: device {Count(DeviceBlocks)} blocks of {BlockSize} tokens ({Count((long)DeviceBlocks * BlockSize)} tokens), {Bytes(DeviceKvBytes)} of KV; " +
            $"host channels for the same blocks: {channels}; {host}";
    }

    private static string Count(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    private static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F2} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):F2} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 10):F2} KiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes} bytes"),
    };
}
