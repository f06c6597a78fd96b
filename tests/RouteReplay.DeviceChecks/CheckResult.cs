using System.Text;
using System.Text.Json;

namespace RouteReplay.DeviceChecks;

/// <summary>One check's verdict, a one-line summary, and its figures as JSON.</summary>
public sealed record CheckResult(string Name, bool Passed, string Summary, Action<Utf8JsonWriter> Details)
{
    public string Line => $"CHECK {Name} {(Passed ? "PASS" : "FAIL")} {Summary}";

    public void Write(string directory)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartObject();
            writer.WriteString("check", Name);
            writer.WriteBoolean("passed", Passed);
            writer.WriteString("summary", Summary);
            Details(writer);
            writer.WriteEndObject();
        }
        File.WriteAllText(Path.Combine(directory, $"{Name}.json"), Encoding.UTF8.GetString(stream.ToArray()));
    }
}
