using System.Text.Json;

namespace RouteReplay.Model.Checkpoints;

/// <summary>Parses and validates the JSON header of a safetensors file.</summary>
internal static class SafetensorsHeaderParser
{
    /// <summary>The header entry holding free-form string metadata, not a tensor.</summary>
    public const string MetadataKey = "__metadata__";

    /// <summary>
    /// Parses <paramref name="header"/> into tensor entries, checking every entry's dtype, shape and offsets
    /// against a data section of <paramref name="dataLength"/> bytes.
    /// </summary>
    public static Dictionary<string, TensorInfo> Parse(ReadOnlySpan<byte> header, long dataLength, string fileName)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header.ToArray());
        }
        catch (JsonException ex)
        {
            throw new CheckpointException(fileName, null, $"{fileName}: the safetensors header is not valid JSON: {ex.Message}", ex);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointException(
                    fileName, null, $"{fileName}: the safetensors header must be a JSON object, not {root.ValueKind}");
            }
            var tensors = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
            foreach (var property in root.EnumerateObject())
            {
                if (property.Name == MetadataKey)
                {
                    continue;
                }
                var info = ParseEntry(property.Name, property.Value, dataLength, fileName);
                if (!tensors.TryAdd(info.Name, info))
                {
                    throw Error(fileName, info.Name, "appears twice in the header");
                }
            }
            return tensors;
        }
    }

    private static TensorInfo ParseEntry(string name, JsonElement entry, long dataLength, string fileName)
    {
        if (entry.ValueKind != JsonValueKind.Object)
        {
            throw Error(fileName, name, $"header entry must be an object, not {entry.ValueKind}");
        }
        var dtype = ParseDType(name, entry, fileName);
        var shape = ParseInt64Array(name, entry, "shape", fileName);
        var offsets = ParseInt64Array(name, entry, "data_offsets", fileName);
        if (offsets.Length != 2)
        {
            throw Error(fileName, name, $"data_offsets must hold [begin, end], but holds {offsets.Length} numbers");
        }
        var (begin, end) = (offsets[0], offsets[1]);
        if (end < begin)
        {
            throw Error(fileName, name, $"data_offsets [{begin}, {end}] end before they begin");
        }
        long expectedBytes;
        try
        {
            expectedBytes = checked(TensorShapes.ElementCount(shape) * TensorDTypes.SizeOf(dtype));
        }
        catch (OverflowException)
        {
            throw Error(fileName, name, $"shape {TensorShapes.Format(shape)} is too large");
        }
        if (end - begin != expectedBytes)
        {
            throw Error(
                fileName,
                name,
                $"shape {TensorShapes.Format(shape)} of {TensorDTypes.ToSafetensorsName(dtype)} needs {expectedBytes} bytes, " +
                $"but data_offsets [{begin}, {end}] span {end - begin}");
        }
        if (end > dataLength)
        {
            throw Error(
                fileName,
                name,
                $"data_offsets [{begin}, {end}] run past the data section, which holds only {dataLength} bytes (truncated file?)");
        }
        return new TensorInfo(name, dtype, shape, begin, expectedBytes);
    }

    private static TensorDType ParseDType(string name, JsonElement entry, string fileName)
    {
        if (!entry.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
        {
            throw Error(fileName, name, "has no dtype string");
        }
        var dtypeName = dtypeElement.GetString()!;
        if (!TensorDTypes.TryParseSafetensorsName(dtypeName, out var dtype))
        {
            throw Error(fileName, name, $"has dtype '{dtypeName}', which is not supported (supported: F32, F16, BF16, and U8 for quantised blocks)");
        }
        return dtype;
    }

    private static long[] ParseInt64Array(string name, JsonElement entry, string key, string fileName)
    {
        if (!entry.TryGetProperty(key, out var array) || array.ValueKind != JsonValueKind.Array)
        {
            throw Error(fileName, name, $"has no {key} array");
        }
        var values = new long[array.GetArrayLength()];
        var index = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out var value) || value < 0)
            {
                throw Error(fileName, name, $"{key} must hold non-negative integers, but holds {item.GetRawText()}");
            }
            values[index++] = value;
        }
        return values;
    }

    private static CheckpointException Error(string fileName, string tensor, string problem) =>
        new(fileName, tensor, $"{fileName}: tensor '{tensor}' {problem}");
}
