using RouteReplay.Backends;
using RouteReplay.Routing;

namespace RouteReplay.Cache;

/// <summary>
/// The routing channel: each slot's row is its token's <c>[L_moe, K]</c> expert ids, captured from the step's routing
/// buffer after the forward pass. The channel's unset bytes are exactly the routing sentinel (the element type's
/// maximum), so an unwritten row fails <see cref="ContainsUnset"/> when a request's routing is assembled.
/// </summary>
public sealed class RoutingChannel : BlockChannel
{
    /// <summary>The name every routing channel carries.</summary>
    public const string ChannelName = "routing";

    public RoutingChannel(RoutingFormat format, int numBlocks, int blockSize)
        : base(ChannelName, RowBytesOf(format), numBlocks, blockSize) => Format = format;

    /// <summary>The routing row layout of the model.</summary>
    public RoutingFormat Format { get; }

    /// <summary>True when any element of <paramref name="rows"/> is the routing sentinel (not merely any 0xFF byte).</summary>
    public override bool ContainsUnset(ReadOnlySpan<byte> rows) => Format.ContainsSentinel(rows);

    /// <exception cref="InvalidOperationException">The step's routing rows have another size than this channel's.</exception>
    protected override void WriteStepRow(ForwardBatch batch, int token, Span<byte> destination)
    {
        var row = batch.RoutingRow(token);
        if (row.Length != destination.Length)
        {
            throw new InvalidOperationException($"the step's routing rows have {row.Length} bytes, the routing channel's {destination.Length}");
        }
        row.CopyTo(destination);
    }

    private static int RowBytesOf(RoutingFormat format)
    {
        ArgumentNullException.ThrowIfNull(format);
        return format.RowBytes;
    }
}
