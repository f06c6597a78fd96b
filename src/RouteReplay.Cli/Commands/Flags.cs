using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace RouteReplay.Cli.Commands;

/// <summary>
/// Options whose values are parsed here, so a bad value is a parse error naming the flag and what it takes
/// ("--port must be an integer, got 'abc'") instead of System.CommandLine's message with a .NET type name. Ranges are
/// checked by the options records the flags map to.
/// </summary>
internal static class Flags
{
    public static Option<int> Int(string name, string description, int defaultValue) =>
        Parsed(name, description, defaultValue, "an integer", text => int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) ? v : null);

    public static Option<long> Long(string name, string description, long defaultValue) =>
        Parsed(name, description, defaultValue, "an integer", text => long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) ? v : null);

    public static Option<double> Double(string name, string description, double defaultValue) =>
        Parsed(name, description, defaultValue, "a number", text => double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : null);

    public static Option<float> Float(string name, string description, float defaultValue) =>
        Parsed(name, description, defaultValue, "a number", text => float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : null);

    /// <summary>An optional integer (null when the flag is absent).</summary>
    public static Option<int?> OptionalInt(string name, string description)
    {
        var option = new Option<int?>(name) { Description = description };
        option.CustomParser = result => Parse<int>(result, name, "an integer", text => int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) ? v : null);
        return option;
    }

    /// <summary>An optional unsigned 64-bit integer such as a seed (null when the flag is absent).</summary>
    public static Option<ulong?> OptionalUInt64(string name, string description)
    {
        var option = new Option<ulong?>(name) { Description = description };
        option.CustomParser = result => Parse<ulong>(result, name, $"an integer in 0..{ulong.MaxValue}", text => ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : null);
        return option;
    }

    /// <summary>One of <paramref name="choices"/>' names (lower case, as documented), mapped to its value.</summary>
    public static Option<T> Choice<T>(string name, string description, T defaultValue, IReadOnlyDictionary<string, T> choices)
        where T : notnull
    {
        var list = string.Join(", ", choices.Keys);
        var option = new Option<T>(name)
        {
            Description = description,
            DefaultValueFactory = _ => defaultValue,
            HelpName = string.Join('|', choices.Keys),
        };
        option.CustomParser = result =>
        {
            if (result.Tokens.Count == 0)
            {
                return defaultValue;
            }
            var text = Single(result);
            if (text is not null && choices.TryGetValue(text, out var value))
            {
                return value;
            }
            result.AddError($"{name} must be one of {list}, got '{text}'");
            return defaultValue;
        };
        return option;
    }

    /// <summary>True when the user wrote the flag (not only its default).</summary>
    public static bool IsGiven(ParseResult parse, Option option) => parse.GetResult(option) is { Implicit: false };

    private static Option<T> Parsed<T>(string name, string description, T defaultValue, string kind, Func<string, T?> parse)
        where T : struct
    {
        var option = new Option<T>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.CustomParser = result => Parse(result, name, kind, parse) ?? defaultValue;
        return option;
    }

    private static T? Parse<T>(ArgumentResult result, string name, string kind, Func<string, T?> parse)
        where T : struct
    {
        if (result.Tokens.Count == 0)
        {
            return null;
        }
        var text = Single(result);
        if (text is not null && parse(text) is { } value)
        {
            return value;
        }
        result.AddError($"{name} must be {kind}, got '{text}'");
        return null;
    }

    private static string? Single(ArgumentResult result) => result.Tokens.Count == 1 ? result.Tokens[0].Value : null;
}
