using System.Buffers;
using System.Buffers.Binary;
using System.Text.Json;
using RouteReplay.Engine;

namespace RouteReplay.Server;

/// <summary>The two JSON forms of a choice's routing rows.</summary>
public static class RoutingWire
{
    /// <summary>
    /// DESIGN.md's form: <c>{"start", "shape": [rows, L_moe, K], "dtype", "moe_layers", "encoding": "base64", "data"}</c>,
    /// the rows as stored (C order, little-endian). Returns the bytes of data written.
    /// </summary>
    public static int Write(Utf8JsonWriter writer, string name, RoutingRows routing)
    {
        var format = routing.Format;
        writer.WriteStartObject(name);
        writer.WriteNumber("start", routing.Start);
        writer.WriteStartArray("shape");
        writer.WriteNumberValue(routing.RowCount);
        writer.WriteNumberValue(format.MoeLayerCount);
        writer.WriteNumberValue(format.TopK);
        writer.WriteEndArray();
        writer.WriteString("dtype", format.NumpyName);
        writer.WriteStartArray("moe_layers");
        foreach (var layer in format.MoeLayers)
        {
            writer.WriteNumberValue(layer);
        }
        writer.WriteEndArray();
        writer.WriteString("encoding", "base64");
        writer.WriteBase64String("data", routing.Data);
        writer.WriteEndObject();
        return routing.Data.Length;
    }

    /// <summary>
    /// SGLang's <c>meta_info.routed_experts</c>: base64 of little-endian int32 <c>[rows, num_hidden_layers, K]</c>, C order,
    /// where the layer axis counts every layer and a dense layer's ids are 0 (SGLang's zero-filled capture buffer).
    /// Returns the bytes of data written.
    /// </summary>
    public static int WriteSglang(Utf8JsonWriter writer, string name, RoutingRows routing, int numHiddenLayers)
    {
        var format = routing.Format;
        int rows = routing.RowCount, k = format.TopK;
        var length = rows * numHiddenLayers * k * sizeof(int);
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(length, 1));
        try
        {
            var bytes = buffer.AsSpan(0, length);
            bytes.Clear();
            var source = routing.Data.AsSpan();
            for (var row = 0; row < rows; row++)
            {
                for (var m = 0; m < format.MoeLayerCount; m++)
                {
                    var layer = format.MoeLayers[m];
                    for (var j = 0; j < k; j++)
                    {
                        var id = format.Get(source, (((row * format.MoeLayerCount) + m) * k) + j);
                        var offset = ((((row * numHiddenLayers) + layer) * k) + j) * sizeof(int);
                        BinaryPrimitives.WriteInt32LittleEndian(bytes[offset..], id);
                    }
                }
            }
            writer.WriteBase64String(name, bytes);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return length;
    }
}
