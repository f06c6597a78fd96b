using System.Text.Json;

namespace RouteReplay.Model.Checkpoints;

/// <summary>
/// Typed access to the fields of one JSON object of a config file. A field holding JSON null counts as absent.
/// Every error is a <see cref="CheckpointException"/> naming the file and the field (dotted for nested objects).
/// </summary>
internal readonly struct JsonObjectReader
{
    private readonly JsonElement _element;
    private readonly string _prefix;

    public JsonObjectReader(JsonElement element, string fileName, string prefix = "")
    {
        _element = element;
        FileName = fileName;
        _prefix = prefix;
    }

    public string FileName { get; }

    public string FieldName(string key) => _prefix.Length == 0 ? key : $"{_prefix}.{key}";

    public IReadOnlyList<string> Keys()
    {
        var keys = new List<string>();
        foreach (var property in _element.EnumerateObject())
        {
            keys.Add(property.Name);
        }
        return keys;
    }

    public bool Has(string key) => TryGet(key, out _);

    public int RequiredInt(string key) => OptionalInt(key) ?? throw Missing(key);

    public int? OptionalInt(string key) => TryGet(key, out var value) ? ToInt(key, value) : null;

    public int RequiredPositiveInt(string key) => Positive(key, RequiredInt(key));

    public int? OptionalPositiveInt(string key) => OptionalInt(key) is { } value ? Positive(key, value) : null;

    public double RequiredDouble(string key) => OptionalDouble(key) ?? throw Missing(key);

    public double? OptionalDouble(string key)
    {
        if (!TryGet(key, out var value))
        {
            return null;
        }
        if (value.ValueKind != JsonValueKind.Number)
        {
            throw WrongType(key, "a number", value);
        }
        return value.GetDouble();
    }

    public bool? OptionalBool(string key)
    {
        if (!TryGet(key, out var value))
        {
            return null;
        }
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw WrongType(key, "true or false", value),
        };
    }

    public string RequiredString(string key) => OptionalString(key) ?? throw Missing(key);

    public string? OptionalString(string key)
    {
        if (!TryGet(key, out var value))
        {
            return null;
        }
        if (value.ValueKind != JsonValueKind.String)
        {
            throw WrongType(key, "a string", value);
        }
        return value.GetString();
    }

    public IReadOnlyList<string>? OptionalStringList(string key)
    {
        if (!TryGet(key, out var value))
        {
            return null;
        }
        if (value.ValueKind != JsonValueKind.Array)
        {
            throw WrongType(key, "an array of strings", value);
        }
        var reader = this;
        return value.EnumerateArray()
            .Select(item => item.ValueKind == JsonValueKind.String
                ? item.GetString()!
                : throw reader.WrongType(key, "an array of strings", value))
            .ToArray();
    }

    public IReadOnlyList<int>? OptionalIntList(string key)
    {
        if (!TryGet(key, out var value))
        {
            return null;
        }
        if (value.ValueKind != JsonValueKind.Array)
        {
            throw WrongType(key, "an array of integers", value);
        }
        var reader = this;
        return value.EnumerateArray().Select(item => reader.ToInt(key, item)).ToArray();
    }

    /// <summary>A field that may hold one integer or an array of integers (e.g. <c>eos_token_id</c>); absent gives empty.</summary>
    public IReadOnlyList<int> IntOrIntList(string key)
    {
        if (!TryGet(key, out var value))
        {
            return [];
        }
        return value.ValueKind == JsonValueKind.Array ? OptionalIntList(key)! : [ToInt(key, value)];
    }

    public JsonObjectReader? OptionalObject(string key)
    {
        if (!TryGet(key, out var value))
        {
            return null;
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw WrongType(key, "an object", value);
        }
        return new JsonObjectReader(value, FileName, FieldName(key));
    }

    public CheckpointException Error(string key, string problem)
    {
        var field = FieldName(key);
        return new CheckpointException(FileName, field, $"{FileName}: '{field}' {problem}");
    }

    private bool TryGet(string key, out JsonElement value) =>
        _element.TryGetProperty(key, out value) && value.ValueKind != JsonValueKind.Null;

    private int ToInt(string key, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Number)
        {
            throw WrongType(key, "an integer", value);
        }
        if (!value.TryGetInt32(out var result))
        {
            throw Error(key, $"must be a 32-bit integer, but is {value.GetRawText()}");
        }
        return result;
    }

    private int Positive(string key, int value) =>
        value > 0 ? value : throw Error(key, $"must be positive, but is {value}");

    private CheckpointException Missing(string key) => Error(key, "is required but missing");

    private CheckpointException WrongType(string key, string expected, JsonElement value)
    {
        var text = value.GetRawText();
        if (text.Length > 60)
        {
            text = text[..60] + "...";
        }
        return Error(key, $"must be {expected}, but is {value.ValueKind} {text}");
    }
}
