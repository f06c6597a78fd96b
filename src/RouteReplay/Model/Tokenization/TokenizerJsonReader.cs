using System.Text.Json;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Model.Tokenization;

/// <summary>Reads a tokenizer file into a <see cref="JsonDocument"/>, and its fields with errors that name the file and field.</summary>
internal sealed class TokenizerJsonReader(string path)
{
    public string Path { get; } = path;

    public JsonDocument Open()
    {
        if (!File.Exists(Path))
        {
            throw TokenizerFileError.Missing(Path);
        }
        byte[] bytes;
        try
        {
            bytes = RegularFiles.ReadAllBytes(Path, RegularFiles.MaxJsonFileBytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw TokenizerFileError.Unreadable(Path, e);
        }
        try
        {
            return JsonDocument.Parse(bytes);
        }
        catch (JsonException e)
        {
            throw TokenizerFileError.Invalid(Path, $"not valid JSON ({e.Message})", e);
        }
    }

    public JsonElement Required(JsonElement parent, string name, JsonValueKind kind, string field)
    {
        if (parent.ValueKind != JsonValueKind.Object || !parent.TryGetProperty(name, out var value))
        {
            throw Invalid($"'{field}' is missing.");
        }
        return value.ValueKind == kind ? value : throw Invalid($"'{field}' must be {Describe(kind)}, not {Describe(value.ValueKind)}.");
    }

    public JsonElement? Optional(JsonElement parent, string name) =>
        parent.ValueKind == JsonValueKind.Object && parent.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null
            ? value
            : null;

    public string? OptionalString(JsonElement parent, string name) =>
        Optional(parent, name) is { ValueKind: JsonValueKind.String } value ? value.GetString() : null;

    public string RequiredString(JsonElement parent, string name, string field) =>
        Required(parent, name, JsonValueKind.String, field).GetString()!;

    public int RequiredTokenId(JsonElement parent, string name, string field)
    {
        var value = Required(parent, name, JsonValueKind.Number, field);
        return value.TryGetInt32(out var id) && id >= 0 ? id : throw Invalid($"'{field}' must be a non-negative integer token id, not {value.GetRawText()}.");
    }

    public Exception Invalid(string detail) => TokenizerFileError.Invalid(Path, detail);

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };
}
