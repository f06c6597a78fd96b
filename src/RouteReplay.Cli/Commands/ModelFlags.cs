using System.CommandLine;
using RouteReplay.Engine;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;

namespace RouteReplay.Cli.Commands;

/// <summary>How a running command gets its weights.</summary>
internal enum LoadFormat
{
    /// <summary>Read the checkpoint <c>--model</c> names (a folder, or a preset made once into the cache).</summary>
    Auto,

    /// <summary>Random weights made on the GPU; the architecture from <c>--preset</c> or <c>--model</c>.</summary>
    Dummy,
}

/// <summary>The model a running command serves: a checkpoint (folder or made preset), or an architecture with dummy weights.</summary>
internal sealed record ModelSource(ModelChoice Choice, LoadFormat Format, ModelConfig? DummyConfig, string? DummyName, ulong WeightsSeed)
{
    /// <summary>The name clients see: the folder's, the preset's, or the dummy architecture's.</summary>
    public string Name => DummyName ?? Choice.Name;

    /// <summary>The identity of the weights in block keys: the user's version or the dummy seed; null hashes the files.</summary>
    public string? WeightsIdentity(EngineOptions options) =>
        options.WeightsVersion ?? (Format == LoadFormat.Dummy ? LoadedModel.DummyWeightsVersion(WeightsSeed) : null);

    /// <summary>Loads the engine; makes a preset into the cache first when the model is one.</summary>
    public LlmEngine Load(EngineOptions options, TextWriter log) => Format == LoadFormat.Dummy
        ? LoadedModel.LoadDummy(DummyConfig!, WeightsSeed, options)
        : LoadedModel.Load(Choice.Materialize(log), options);
}

/// <summary>
/// The model flags every running command shares: <c>--model</c> (a folder or a preset), and for weights made on the
/// GPU <c>--load-format dummy</c> with <c>--preset</c> and <c>--weights-seed</c>.
/// </summary>
internal sealed class ModelFlags
{
    private static readonly Dictionary<string, LoadFormat> Formats = new()
    {
        ["auto"] = LoadFormat.Auto,
        ["dummy"] = LoadFormat.Dummy,
    };

    private readonly Option<LoadFormat> _loadFormat = Flags.Choice(
        "--load-format",
        "auto: read the weights --model names; dummy: random bf16 weights made on the GPU (needs --device cuda), architecture from --preset or --model.",
        LoadFormat.Auto,
        Formats);
    private readonly Option<string?> _preset = new("--preset") { Description = $"With --load-format dummy: the architecture ({string.Join(", ", ModelPresets.Names)})." };
    private readonly Option<ulong?> _weightsSeed = Flags.OptionalUInt64("--weights-seed", "With --load-format dummy: seed of the random weights (default 0).");

    public ModelFlag Model { get; } = new();

    public void AddTo(Command command)
    {
        command.Options.Add(Model.Option);
        command.Options.Add(_loadFormat);
        command.Options.Add(_preset);
        command.Options.Add(_weightsSeed);
    }

    /// <summary>Checks the flags without making or loading anything.</summary>
    /// <exception cref="ArgumentException">A flag combination that cannot work, naming the flag.</exception>
    public ModelSource Read(ParseResult parse)
    {
        var format = parse.GetValue(_loadFormat);
        var preset = parse.GetValue(_preset);
        var modelGiven = parse.GetValue(Model.Option) is not null;
        if (format != LoadFormat.Dummy)
        {
            if (preset is not null)
            {
                throw new ArgumentException("--preset names the architecture of --load-format dummy; to run a preset's checkpoint, pass it as --model", "preset");
            }
            return new ModelSource(Model.Read(parse), format, null, null, 0);
        }
        var seed = parse.GetValue(_weightsSeed) ?? 0;
        if (preset is not null)
        {
            if (modelGiven)
            {
                throw new ArgumentException("--load-format dummy takes its architecture from --preset or from --model, not both", "preset");
            }
            var chosen = ModelPresets.Get(preset);
            return new ModelSource(new ModelChoice(null, chosen.Name), format, chosen.Config, chosen.Name, seed);
        }
        if (!modelGiven)
        {
            throw new ArgumentException("--load-format dummy needs --preset NAME or --model DIR (for its config.json)", "load-format");
        }
        var choice = Model.Read(parse);
        var config = choice.Folder is { } folder ? ModelConfig.Load(Path.Combine(folder, Checkpoint.ConfigFileName)) : ModelPresets.Get(choice.Preset!).Config;
        return new ModelSource(choice, format, config, choice.Name, seed);
    }
}
