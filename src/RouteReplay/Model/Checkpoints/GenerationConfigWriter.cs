namespace RouteReplay.Model.Checkpoints;

/// <summary>Writes a <c>generation_config.json</c> with greedy defaults and the given end-of-sequence ids.</summary>
internal static class GenerationConfigWriter
{
    public static void Write(GenerationConfig generation, string path) => IndentedJsonFile.Write(path, writer =>
    {
        writer.WriteStartObject();
        writer.WriteNull("bos_token_id");
        writer.WriteBoolean("do_sample", false);
        IndentedJsonFile.WriteIntOrIntList(writer, "eos_token_id", generation.EosTokenIds);
        writer.WriteEndObject();
    });
}
