using RouteReplay.Model.Presets;

namespace RouteReplay.Cli;

/// <summary>The built-in tiny preset, made once into a cache folder so commands work with no <c>--model</c>.</summary>
internal static class DefaultModel
{
    public const string Preset = "tiny";

    public static string CacheRoot
    {
        get
        {
            var configured = Environment.GetEnvironmentVariable("ROUTEREPLAY_CACHE");
            if (!string.IsNullOrEmpty(configured))
            {
                return configured;
            }
            var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            var root = string.IsNullOrEmpty(xdg)
                ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache")
                : xdg;
            return Path.Combine(root, "routereplay");
        }
    }

    /// <summary>Returns the folder of the tiny preset, making it first when absent (atomically, so racing processes agree).</summary>
    public static string EnsureTinyModel(TextWriter log)
    {
        var target = Path.Combine(CacheRoot, "models", $"{Preset}-seed0");
        if (File.Exists(Path.Combine(target, "model.safetensors")))
        {
            return target;
        }
        log.WriteLine($"Making the built-in '{Preset}' model in {target} (once)...");
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        var staging = $"{target}.tmp-{Environment.ProcessId}";
        ModelMaker.Make(ModelPresets.Get(Preset), staging);
        try
        {
            Directory.Move(staging, target);
        }
        catch (IOException) when (File.Exists(Path.Combine(target, "model.safetensors")))
        {
            Directory.Delete(staging, recursive: true);
        }
        return target;
    }
}
