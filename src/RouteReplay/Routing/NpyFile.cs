using System.Text;

namespace RouteReplay.Routing;

/// <summary>Writes routing rows as a NumPy <c>.npy</c> file (format 1.0, C order) of shape <c>(rows, L_moe, K)</c>.</summary>
public static class NpyFile
{
    public static void WriteRouting(string path, RoutingFormat format, ReadOnlySpan<byte> rows)
    {
        if (rows.Length % format.RowBytes != 0)
        {
            throw new ArgumentException($"routing buffer of {rows.Length} bytes is not a whole number of {format.RowBytes}-byte rows", nameof(rows));
        }
        var rowCount = rows.Length / format.RowBytes;
        using var stream = File.Create(path);
        stream.Write(Header(format.NumpyDescriptor, [rowCount, format.MoeLayerCount, format.TopK]));
        stream.Write(rows);
    }

    /// <summary>The magic, version, header length and a header padded so that data starts on a 64-byte boundary.</summary>
    internal static byte[] Header(string descriptor, IReadOnlyList<int> shape)
    {
        var shapeText = shape.Count == 1 ? $"({shape[0]},)" : $"({string.Join(", ", shape)})";
        var dict = $"{{'descr': '{descriptor}', 'fortran_order': False, 'shape': {shapeText}, }}";
        const int prefix = 10;
        var total = (prefix + dict.Length + 1 + 63) / 64 * 64;
        var header = dict.PadRight(total - prefix - 1) + "\n";
        var bytes = new byte[total];
        bytes[0] = 0x93;
        Encoding.ASCII.GetBytes("NUMPY", bytes.AsSpan(1));
        bytes[6] = 1;
        bytes[7] = 0;
        bytes[8] = (byte)(header.Length & 0xFF);
        bytes[9] = (byte)(header.Length >> 8);
        Encoding.ASCII.GetBytes(header, bytes.AsSpan(prefix));
        return bytes;
    }
}
