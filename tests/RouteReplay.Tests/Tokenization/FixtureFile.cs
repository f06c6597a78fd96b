using System.Text.Json;

namespace RouteReplay.Tests.Tokenization;

/// <summary>Reads the JSON fixtures copied beside the test assembly (made with Hugging Face by scripts/tokenizer_reference.py).</summary>
internal static class FixtureFile
{
    public static JsonElement Load(string name)
    {
        using var document = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Fixtures", name)));
        return document.RootElement.Clone();
    }

    public static JsonElement Entry(string name, int index) => Load(name)[index];

    /// <summary>One theory row per entry, by index, so each entry passes or fails on its own.</summary>
    public static TheoryData<int> Indexes(string name) => new(Enumerable.Range(0, Load(name).GetArrayLength()));

    public static int[] Ids(JsonElement ids) => [.. ids.EnumerateArray().Select(id => id.GetInt32())];

    public static string String(JsonElement parent, string name) => parent.GetProperty(name).GetString()!;
}
