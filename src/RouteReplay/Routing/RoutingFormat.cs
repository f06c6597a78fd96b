using System.Buffers.Binary;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Routing;

/// <summary>Element type of routing rows: <c>uint8</c> when the model has at most 255 experts, else <c>uint16</c>.</summary>
public enum RoutingDType
{
    UInt8,
    UInt16,
}

/// <summary>
/// Shape and element type of routing rows. A row is one token's <c>[MoeLayerCount, TopK]</c> expert ids, ordered
/// by descending router probability (ties to the lower id). The element type's maximum value is the unset sentinel:
/// a row still holding it was never written and must never be returned.
/// </summary>
public sealed record RoutingFormat
{
    public RoutingFormat(IReadOnlyList<int> moeLayers, int topK, int numExperts)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(topK);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numExperts);
        if (numExperts > ushort.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(numExperts), numExperts, "at most 65535 experts fit a uint16 routing row");
        }
        MoeLayers = moeLayers.ToArray();
        TopK = topK;
        NumExperts = numExperts;
        DType = numExperts <= byte.MaxValue ? RoutingDType.UInt8 : RoutingDType.UInt16;
    }

    public static RoutingFormat For(ModelConfig config) => new(config.MoeLayers, config.NumExpertsPerTok, config.NumExperts);

    /// <summary>Indices of the MoE layers among all layers (dense layers have no routing).</summary>
    public IReadOnlyList<int> MoeLayers { get; }

    public int MoeLayerCount => MoeLayers.Count;

    public int TopK { get; }

    public int NumExperts { get; }

    public RoutingDType DType { get; }

    public int ElementSize => DType == RoutingDType.UInt8 ? 1 : 2;

    /// <summary>The unset sentinel: the element type's maximum value.</summary>
    public int Sentinel => DType == RoutingDType.UInt8 ? byte.MaxValue : ushort.MaxValue;

    public int ElementsPerRow => MoeLayerCount * TopK;

    public int RowBytes => ElementsPerRow * ElementSize;

    /// <summary>NumPy's name for the element type (<c>uint8</c> or <c>uint16</c>), used on the wire.</summary>
    public string NumpyName => DType == RoutingDType.UInt8 ? "uint8" : "uint16";

    /// <summary>NumPy's dtype descriptor (<c>|u1</c> or <c>&lt;u2</c>), used in <c>.npy</c> headers.</summary>
    public string NumpyDescriptor => DType == RoutingDType.UInt8 ? "|u1" : "<u2";

    /// <summary>Reads element <paramref name="index"/> (counted in elements, not bytes) of a little-endian routing buffer.</summary>
    public int Get(ReadOnlySpan<byte> buffer, int index) => DType == RoutingDType.UInt8
        ? buffer[index]
        : BinaryPrimitives.ReadUInt16LittleEndian(buffer[(index * 2)..]);

    public void Set(Span<byte> buffer, int index, int expertId)
    {
        if (DType == RoutingDType.UInt8)
        {
            buffer[index] = (byte)expertId;
        }
        else
        {
            BinaryPrimitives.WriteUInt16LittleEndian(buffer[(index * 2)..], (ushort)expertId);
        }
    }

    /// <summary>Fills whole rows with the unset sentinel.</summary>
    public void Reset(Span<byte> rows) => rows.Fill(byte.MaxValue);

    /// <summary>True when any element of <paramref name="rows"/> holds the unset sentinel.</summary>
    public bool ContainsSentinel(ReadOnlySpan<byte> rows)
    {
        if (DType == RoutingDType.UInt8)
        {
            return rows.Contains(byte.MaxValue);
        }
        for (var i = 0; i + 1 < rows.Length; i += 2)
        {
            if (rows[i] == byte.MaxValue && rows[i + 1] == byte.MaxValue)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>True when the row's first element is the sentinel, which marks a row with no forced routing.</summary>
    public bool IsUnsetRow(ReadOnlySpan<byte> row) => Get(row, 0) == Sentinel;
}
