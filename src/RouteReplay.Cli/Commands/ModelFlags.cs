using System.CommandLine;
using RouteReplay.Cache;
using RouteReplay.Engine;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;

namespace RouteReplay.Cli.Commands;

/// <summary>How a running command gets its weights.</summary>
internal enum LoadFormat
{
    /// <summary>Read the checkpoint in <c>--model</c> (the built-in tiny preset when absent).</summary>
    Auto,

    /// <summary>Random weights made on the GPU; the architecture from <c>--preset</c> or <c>--model</c>'s config.json.</summary>
    Dummy,
}

/// <summary>The model a running command serves: a checkpoint folder, or an architecture with dummy weights.</summary>
internal sealed record ModelSource(string? Directory, LoadFormat Format, ModelPreset? Preset, ulong WeightsSeed)
{
    /// <summary>The name clients see: the folder's or the preset's.</summary>
    public string? Name => Preset?.Name ?? (Directory is null ? null : Path.GetFileName(Path.TrimEndingDirectorySeparator(Directory)));

    public ModelConfig DummyConfig => Preset?.Config ?? ModelConfig.Load(Path.Combine(Directory!, Checkpoint.ConfigFileName));

    /// <summary>The identity of the weights in block keys: the user's version, the dummy seed, or the files' hash.</summary>
    public string WeightsIdentity(EngineOptions options) =>
        options.WeightsVersion ?? (Format == LoadFormat.Dummy ? LoadedModel.DummyWeightsVersion(WeightsSeed) : ModelFingerprint.HashWeights(Directory!));

    /// <summary>Loads the engine; makes the built-in tiny model first when no model was named.</summary>
    public LlmEngine Load(EngineOptions options, TextWriter log) => Format == LoadFormat.Dummy
        ? LoadedModel.LoadDummy(DummyConfig, WeightsSeed, options)
        : LoadedModel.Load(Directory ?? DefaultModel.EnsureTinyModel(log), options);
}

/// <summary>The model flags every running command shares.</summary>
internal sealed class ModelFlags
{
    private readonly Option<DirectoryInfo?> _model = new("--model") { Description = "Checkpoint folder (Hugging Face format). Default: the built-in tiny preset." };
    private readonly Option<LoadFormat> _loadFormat = new("--load-format")
    {
        Description = "auto: read the weights from --model; dummy: random bf16 weights made on the GPU (needs --device cuda), architecture from --preset or --model's config.json.",
        DefaultValueFactory = _ => LoadFormat.Auto,
    };
    private readonly Option<string?> _preset = new("--preset") { Description = $"With --load-format dummy: the architecture ({string.Join(", ", ModelPresets.Names)})." };
    private readonly Option<ulong> _weightsSeed = new("--weights-seed") { Description = "With --load-format dummy: seed of the random weights.", DefaultValueFactory = _ => 0 };

    public void AddTo(Command command)
    {
        command.Options.Add(_model);
        command.Options.Add(_loadFormat);
        command.Options.Add(_preset);
        command.Options.Add(_weightsSeed);
    }

    public ModelSource Read(ParseResult parse)
    {
        var format = parse.GetValue(_loadFormat);
        var preset = parse.GetValue(_preset);
        var directory = parse.GetValue(_model)?.FullName;
        if (preset is not null && format != LoadFormat.Dummy)
        {
            throw new ArgumentException("--preset names the architecture of --load-format dummy; to run a preset from files, write it with make-model and pass --model", "preset");
        }
        if (format == LoadFormat.Dummy && preset is null && directory is null)
        {
            throw new ArgumentException("--load-format dummy needs --preset NAME or --model DIR (for its config.json)", "load-format");
        }
        if (format == LoadFormat.Dummy && preset is not null && directory is not null)
        {
            throw new ArgumentException("--load-format dummy takes its architecture from --preset or from --model, not both", "preset");
        }
        return new ModelSource(directory, format, preset is null ? null : ModelPresets.Get(preset), parse.GetValue(_weightsSeed));
    }
}
