using System.CommandLine;
using RouteReplay.Model.Presets;

namespace RouteReplay.Cli.Commands;

/// <summary>
/// <c>--model</c>: a checkpoint folder, or the name of a built-in preset (<c>tiny</c>, <c>mixtral-tiny</c>, ...) made once into the
/// cache; absent, the tiny preset. A folder of that name wins over the preset.
/// </summary>
internal sealed class ModelFlag
{
    public Option<string?> Option { get; } = new("--model")
    {
        Description = $"Checkpoint folder (Hugging Face format), or a built-in preset ({string.Join(", ", ModelPresets.Names)}; random weights, made once into the cache). Default: {DefaultModel.Preset}.",
        HelpName = "DIR|PRESET",
    };

    /// <summary>Checks the value without making anything: a folder, or a preset name.</summary>
    /// <exception cref="ArgumentException">Neither a folder nor a preset.</exception>
    public ModelChoice Read(ParseResult parse)
    {
        var value = parse.GetValue(Option);
        if (value is null)
        {
            return new ModelChoice(null, DefaultModel.Preset);
        }
        if (Directory.Exists(value))
        {
            return new ModelChoice(value, null);
        }
        if (ModelPresets.Names.Contains(value))
        {
            return new ModelChoice(null, value);
        }
        var what = File.Exists(value) ? "is a file, not a checkpoint folder" : "is no folder";
        throw new ArgumentException($"--model '{value}' {what}; give a folder with config.json, *.safetensors and tokenizer.json, or a preset: {string.Join(", ", ModelPresets.Names)}", "model");
    }
}

/// <summary>The model a command runs: a checkpoint folder (as the user wrote it, relative or not), or a preset to make first.</summary>
internal sealed record ModelChoice(string? Folder, string? Preset)
{
    /// <summary>The preset's name, or the folder's (of its full path, so <c>.</c> is named too).</summary>
    public string Name => Preset ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(Folder!)));

    /// <summary>The checkpoint folder, making the preset into the cache when it is one and absent.</summary>
    public string Materialize(TextWriter log) => Folder ?? DefaultModel.EnsurePreset(Preset!, log);
}
