using System.CommandLine;
using RouteReplay.Model.Presets;

namespace RouteReplay.Cli.Commands;

internal static class MakeModelCommand
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset")
        {
            Description = $"Which preset to make: {string.Join(", ", ModelPresets.Names)}.",
            Required = true,
        };
        preset.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string>() is { } name && !ModelPresets.Names.Contains(name))
            {
                result.AddError($"--preset must be one of {string.Join(", ", ModelPresets.Names)}, got '{name}'");
            }
        });
        var output = new Option<DirectoryInfo>("--out") { Description = "Folder to write the checkpoint into.", Required = true };
        var seed = Flags.OptionalUInt64("--seed", "Seed of the random weights (default 0).");
        var command = new Command("make-model", "Write a deterministic random-weights checkpoint in Hugging Face format (config.json, generation_config.json, model.safetensors, tokenizer files).")
        {
            preset, output, seed,
        };
        command.SetAction(parse =>
        {
            var chosen = ModelPresets.Get(parse.GetValue(preset)!);
            var dir = parse.GetValue(output)!.FullName;
            OutputPaths.CheckFolder(dir, "--out");
            ModelMaker.Make(chosen, dir, parse.GetValue(seed) ?? 0);
            Console.WriteLine($"Wrote the '{chosen.Name}' preset to {dir}");
            return 0;
        });
        return command;
    }
}
