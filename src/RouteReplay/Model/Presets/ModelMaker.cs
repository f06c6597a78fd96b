using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Model.Presets;

/// <summary>
/// Writes a random-weights Qwen3-MoE checkpoint in Hugging Face format: <c>config.json</c>,
/// <c>generation_config.json</c>, a bf16 <c>model.safetensors</c> and the Qwen3 tokenizer files.
/// The same preset and seed always give byte-identical files.
/// </summary>
public static class ModelMaker
{
    /// <summary>The single weights file a made model has.</summary>
    public const string WeightsFileName = "model.safetensors";

    /// <summary>The largest checkpoint make-model writes: its weights are generated in memory first.</summary>
    public const long MaxWeightBytes = 8_000_000_000;

    private static readonly string[] TokenizerFiles = ["tokenizer.json", "tokenizer_config.json"];

    /// <summary>Writes the checkpoint of <paramref name="preset"/> into <paramref name="outDir"/> (created if needed).</summary>
    /// <param name="preset">The architecture to build.</param>
    /// <param name="outDir">The folder to write; existing files of the same names are replaced.</param>
    /// <param name="seed">The random seed; a different seed gives different weights.</param>
    public static void Make(ModelPreset preset, string outDir, ulong seed = 0)
    {
        ArgumentNullException.ThrowIfNull(preset);
        ArgumentNullException.ThrowIfNull(outDir);
        var bytes = WeightLayout.Enumerate(preset.Config).Sum(w => TensorShapes.ElementCount(w.Shape) * 2);
        if (bytes > MaxWeightBytes)
        {
            throw new ArgumentException(
                $"preset '{preset.Name}' has {bytes / 1e9:F1} GB of weights, more than make-model writes ({MaxWeightBytes / 1e9:F0} GB, made in memory); " +
                $"run it without files: --load-format dummy --preset {preset.Name} --device cuda", "preset");
        }
        var tokenizerDirectory = Assets.Qwen3TokenizerDirectory;
        Directory.CreateDirectory(outDir);
        var config = preset.Config;
        ModelConfigWriter.Write(config, Path.Combine(outDir, Checkpoint.ConfigFileName));
        GenerationConfigWriter.Write(new GenerationConfig(config.EosTokenIds), Path.Combine(outDir, GenerationConfig.FileName));
        var weights = RandomWeightGenerator.Generate(WeightLayout.Enumerate(config).ToArray(), seed);
        SafetensorsWriter.Write(Path.Combine(outDir, WeightsFileName), weights);
        foreach (var file in TokenizerFiles)
        {
            File.Copy(Path.Combine(tokenizerDirectory, file), Path.Combine(outDir, file), overwrite: true);
        }
    }
}
