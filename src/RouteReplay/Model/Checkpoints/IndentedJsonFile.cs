using System.Buffers;
using System.Text.Json;

namespace RouteReplay.Model.Checkpoints;

/// <summary>Writes JSON files byte-for-byte reproducibly: two-space indent, <c>\n</c> line ends, a final newline.</summary>
internal static class IndentedJsonFile
{
    public static void Write(string path, Action<Utf8JsonWriter> writeContent)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, IndentSize = 2, NewLine = "\n" }))
        {
            writeContent(writer);
        }
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None);
        stream.Write(buffer.WrittenSpan);
        stream.WriteByte((byte)'\n');
    }

    public static void WriteIntOrIntList(Utf8JsonWriter writer, string key, IReadOnlyList<int> values)
    {
        switch (values.Count)
        {
            case 0:
                writer.WriteNull(key);
                break;
            case 1:
                writer.WriteNumber(key, values[0]);
                break;
            default:
                WriteIntList(writer, key, values);
                break;
        }
    }

    public static void WriteIntList(Utf8JsonWriter writer, string key, IReadOnlyList<int> values)
    {
        writer.WriteStartArray(key);
        foreach (var value in values)
        {
            writer.WriteNumberValue(value);
        }
        writer.WriteEndArray();
    }
}
