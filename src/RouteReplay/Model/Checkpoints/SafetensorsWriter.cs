using System.Buffers;
using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace RouteReplay.Model.Checkpoints;

/// <summary>
/// Writes safetensors files deterministically: tensors sorted by name (ordinal) in the header and the data,
/// <c>"__metadata__":{"format":"pt"}</c> in the header, and the header padded with spaces to a multiple of 8 bytes.
/// </summary>
public static class SafetensorsWriter
{
    private const int HeaderAlignment = 8;

    /// <summary>Writes <paramref name="tensors"/> to <paramref name="path"/>, replacing any existing file.</summary>
    /// <exception cref="ArgumentException">A name is empty, reserved or repeated, or a tensor's data does not match its shape.</exception>
    public static void Write(string path, IReadOnlyList<TensorToWrite> tensors)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var sorted = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
        Validate(sorted);
        var header = BuildHeader(sorted);

        var temporaryPath = path + ".partial";
        using (var stream = new FileStream(temporaryPath, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            Span<byte> length = stackalloc byte[sizeof(ulong)];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
            stream.Write(length);
            stream.Write(header);
            foreach (var tensor in sorted)
            {
                stream.Write(tensor.Data.Span);
            }
        }
        File.Move(temporaryPath, path, overwrite: true);
    }

    /// <summary>Rounds fp32 values to bf16 (round to nearest, ties to even; NaN stays NaN), little-endian.</summary>
    public static byte[] ToBFloat16(ReadOnlySpan<float> values)
    {
        var bytes = new byte[values.Length * sizeof(ushort)];
        FloatConversion.Float32ToBFloat16(values, bytes);
        return bytes;
    }

    private static void Validate(TensorToWrite[] sorted)
    {
        for (var i = 0; i < sorted.Length; i++)
        {
            var tensor = sorted[i];
            if (string.IsNullOrEmpty(tensor.Name) || tensor.Name == SafetensorsHeaderParser.MetadataKey)
            {
                throw new ArgumentException($"'{tensor.Name}' is not a valid tensor name", nameof(sorted));
            }
            if (i > 0 && sorted[i - 1].Name == tensor.Name)
            {
                throw new ArgumentException($"tensor '{tensor.Name}' is given twice", nameof(sorted));
            }
            if (tensor.Shape.Any(dim => dim < 0))
            {
                throw new ArgumentException(
                    $"tensor '{tensor.Name}' has a negative dimension in shape {TensorShapes.Format(tensor.Shape)}", nameof(sorted));
            }
            var expectedBytes = TensorShapes.ElementCount(tensor.Shape) * TensorDTypes.SizeOf(tensor.DType);
            if (tensor.Data.Length != expectedBytes)
            {
                throw new ArgumentException(
                    $"tensor '{tensor.Name}' of shape {TensorShapes.Format(tensor.Shape)} and dtype {tensor.DType} needs " +
                    $"{expectedBytes} bytes, but {tensor.Data.Length} were given",
                    nameof(sorted));
            }
        }
    }

    private static byte[] BuildHeader(TensorToWrite[] sorted)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            writer.WriteStartObject(SafetensorsHeaderParser.MetadataKey);
            writer.WriteString("format", "pt");
            writer.WriteEndObject();
            long offset = 0;
            foreach (var tensor in sorted)
            {
                writer.WriteStartObject(tensor.Name);
                writer.WriteString("dtype", TensorDTypes.ToSafetensorsName(tensor.DType));
                writer.WriteStartArray("shape");
                foreach (var dim in tensor.Shape)
                {
                    writer.WriteNumberValue(dim);
                }
                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(offset);
                offset += tensor.Data.Length;
                writer.WriteNumberValue(offset);
                writer.WriteEndArray();
                writer.WriteEndObject();
            }
            writer.WriteEndObject();
        }
        var padding = (HeaderAlignment - (buffer.WrittenCount % HeaderAlignment)) % HeaderAlignment;
        var header = new byte[buffer.WrittenCount + padding];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }
}
