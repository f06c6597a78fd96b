using System.Globalization;
using System.Text.Json;

namespace RouteReplay.Server.Http;

/// <summary>
/// Typed, validated access to the fields of one JSON object of a request. A field given as <c>null</c> counts as absent.
/// A known field with a wrong type or value throws a 400 <see cref="ApiException"/> naming it; unknown fields are left
/// for <see cref="UnknownFields"/>.
/// </summary>
public readonly struct RequestFields(JsonElement element, string prefix = "")
{
    public JsonElement Element { get; } = element;

    private string Name(string field) => prefix + field;

    public bool Has(string field) => TryGet(field, out _);

    public bool TryGet(string field, out JsonElement value) =>
        Element.TryGetProperty(field, out value) && value.ValueKind != JsonValueKind.Null;

    public long? Int64(string field, long min, long max)
    {
        if (!TryGet(field, out var value))
        {
            return null;
        }
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var number) || number < min || number > max)
        {
            throw ApiException.BadRequest($"'{Name(field)}' must be an integer in {min}..{max}, got {Show(value)}", Name(field));
        }
        return number;
    }

    public int? Int32(string field, int min, int max) => (int?)Int64(field, min, max);

    public double? Number(string field, double min, double max)
    {
        if (!TryGet(field, out var value))
        {
            return null;
        }
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out var number) || !double.IsFinite(number) || number < min || number > max)
        {
            throw ApiException.BadRequest($"'{Name(field)}' must be a number in [{Format(min)}, {Format(max)}], got {Show(value)}", Name(field));
        }
        return number;
    }

    public bool? Bool(string field)
    {
        if (!TryGet(field, out var value))
        {
            return null;
        }
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiException.BadRequest($"'{Name(field)}' must be true or false, got {Show(value)}", Name(field)),
        };
    }

    public string? String(string field, int maxLength = int.MaxValue)
    {
        if (!TryGet(field, out var value))
        {
            return null;
        }
        if (value.ValueKind != JsonValueKind.String)
        {
            throw ApiException.BadRequest($"'{Name(field)}' must be a string, got {Show(value)}", Name(field));
        }
        var text = Text(value, Name(field));
        if (text.Length > maxLength)
        {
            throw ApiException.BadRequest($"'{Name(field)}' is longer than {maxLength} characters", Name(field));
        }
        return text;
    }

    /// <summary>A string or an array of strings (as <c>stop</c> takes).</summary>
    public IReadOnlyList<string>? StringOrStrings(string field, int maxCount)
    {
        if (!TryGet(field, out var value))
        {
            return null;
        }
        if (value.ValueKind == JsonValueKind.String)
        {
            return [Text(value, Name(field))];
        }
        if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() > maxCount)
        {
            throw ApiException.BadRequest($"'{Name(field)}' must be a string or an array of at most {maxCount} strings", Name(field));
        }
        var list = new List<string>(value.GetArrayLength());
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                throw ApiException.BadRequest($"'{Name(field)}' must hold only strings, got {Show(item)}", Name(field));
            }
            list.Add(Text(item, Name(field)));
        }
        return list;
    }

    /// <summary>An array of integers in <c>[min, max]</c>.</summary>
    public IReadOnlyList<int>? Ints(string field, int min, int max, int maxCount) =>
        TryGet(field, out var value) ? IntArray(value, Name(field), min, max, maxCount) : null;

    public static int[] IntArray(JsonElement value, string name, int min, int max, int maxCount)
    {
        if (value.ValueKind != JsonValueKind.Array)
        {
            throw ApiException.BadRequest($"'{name}' must be an array of integers, got {Show(value)}", name);
        }
        var length = value.GetArrayLength();
        if (length > maxCount)
        {
            throw ApiException.BadRequest($"'{name}' has {length} items, more than {maxCount}", name);
        }
        var ids = new int[length];
        var i = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out var id) || id < min || id > max)
            {
                throw ApiException.BadRequest($"'{name}' must hold integers in {min}..{max}, got {Show(item)} at index {i}", name);
            }
            ids[i++] = id;
        }
        return ids;
    }

    public RequestFields? Object(string field)
    {
        if (!TryGet(field, out var value))
        {
            return null;
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw ApiException.BadRequest($"'{Name(field)}' must be an object, got {Show(value)}", Name(field));
        }
        return new RequestFields(value, Name(field) + ".");
    }

    /// <summary>The names of this object's fields that are not in <paramref name="known"/>.</summary>
    public List<string> UnknownFields(IReadOnlySet<string> known)
    {
        var unknown = new List<string>();
        foreach (var property in Element.EnumerateObject())
        {
            if (!known.Contains(property.Name))
            {
                unknown.Add(prefix + property.Name);
            }
        }
        return unknown;
    }

    /// <summary>A string value; escapes that make invalid UTF-16 (a lone surrogate) are a 400.</summary>
    public static string Text(JsonElement value, string name)
    {
        try
        {
            return value.GetString()!;
        }
        catch (InvalidOperationException)
        {
            throw ApiException.BadRequest($"'{name}' is not valid Unicode text", name);
        }
    }

    /// <summary>A short rendering of a value for an error message.</summary>
    public static string Show(JsonElement value)
    {
        var text = value.ValueKind switch
        {
            JsonValueKind.Object => "an object",
            JsonValueKind.Array => "an array",
            JsonValueKind.String => "a string",
            _ => value.GetRawText(),
        };
        return text.Length > 40 ? text[..40] + "..." : text;
    }

    private static string Format(double value) => value.ToString("G", CultureInfo.InvariantCulture);
}
