using System.Text.Json;

namespace RouteReplay.Model.Checkpoints;

/// <summary>Reads a JSON config file into a document whose root is an object, with errors naming the file.</summary>
internal static class JsonConfigDocument
{
    public static string ReadText(string path)
    {
        try
        {
            using var reader = new StreamReader(new MemoryStream(RegularFiles.ReadAllBytes(path, RegularFiles.MaxJsonFileBytes)), detectEncodingFromByteOrderMarks: true);
            return reader.ReadToEnd();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, null, $"{path}: cannot read the file: {ex.Message}", ex);
        }
    }

    public static JsonDocument Parse(string json, string fileName)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException ex)
        {
            throw new CheckpointException(fileName, null, $"{fileName}: not valid JSON: {ex.Message}", ex);
        }
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            var kind = document.RootElement.ValueKind;
            document.Dispose();
            throw new CheckpointException(fileName, null, $"{fileName}: the top level must be a JSON object, not {kind}");
        }
        return document;
    }
}
