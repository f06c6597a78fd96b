namespace RouteReplay.Model.Checkpoints;

/// <summary>The parts of a Hugging Face <c>generation_config.json</c> the engine uses.</summary>
/// <param name="EosTokenIds">End-of-sequence token ids from <c>eos_token_id</c> (one integer or a list; empty when absent).</param>
public sealed record GenerationConfig(IReadOnlyList<int> EosTokenIds)
{
    /// <summary>The file name looked for in a model folder.</summary>
    public const string FileName = "generation_config.json";

    /// <summary>Reads <c>generation_config.json</c> from <paramref name="modelDir"/>, or returns null when there is none.</summary>
    /// <exception cref="CheckpointException">The file exists but is malformed.</exception>
    public static GenerationConfig? Load(string modelDir)
    {
        var path = Path.Combine(modelDir, FileName);
        if (!File.Exists(path))
        {
            return null;
        }
        using var document = JsonConfigDocument.Parse(JsonConfigDocument.ReadText(path), path);
        var fields = new JsonObjectReader(document.RootElement, path);
        return new GenerationConfig(fields.IntOrIntList("eos_token_id"));
    }

    /// <inheritdoc />
    public bool Equals(GenerationConfig? other) => other is not null && EosTokenIds.SequenceEqual(other.EosTokenIds);

    /// <inheritdoc />
    public override int GetHashCode() => EosTokenIds.Aggregate(EosTokenIds.Count, HashCode.Combine);
}
