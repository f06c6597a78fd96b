using System.Globalization;

namespace RouteReplay.Tests.Support;

/// <summary>Reads the samples of a <c>/metrics</c> answer.</summary>
public static class PrometheusText
{
    /// <summary>Every sample, keyed by name with labels as written (<c>name{a="b"}</c>).</summary>
    public static Dictionary<string, double> Parse(string text)
    {
        var samples = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }
            var space = line.LastIndexOf(' ');
            samples[line[..space]] = double.Parse(line[(space + 1)..], CultureInfo.InvariantCulture);
        }
        return samples;
    }
}
