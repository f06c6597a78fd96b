namespace RouteReplay;

/// <summary>Locates the files the project ships beside its assemblies (tokenizer files the presets use).</summary>
public static class Assets
{
    /// <summary>The folder holding the Qwen3 tokenizer files (tokenizer.json, tokenizer_config.json).</summary>
    public static string Qwen3TokenizerDirectory => Find(Path.Combine("assets", "qwen3-tokenizer"));

    private static string Find(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, relative);
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new DirectoryNotFoundException(
            $"The shipped asset folder '{relative}' was not found beside {AppContext.BaseDirectory} or above it; reinstall RouteReplay.");
    }
}
