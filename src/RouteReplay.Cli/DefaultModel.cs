using RouteReplay.Model.Presets;

namespace RouteReplay.Cli;

/// <summary>The built-in presets, each made once into a cache folder, so commands work with no <c>--model</c>.</summary>
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

    /// <summary>Returns the folder of <paramref name="preset"/>, making it first when absent (atomically, so racing processes agree).</summary>
    /// <exception cref="IOException">The cache folder cannot be written.</exception>
    public static string EnsurePreset(string preset, TextWriter log)
    {
        var target = Path.Combine(CacheRoot, "models", $"{preset}-seed0");
        if (File.Exists(Path.Combine(target, "model.safetensors")))
        {
            return target;
        }
        log.WriteLine($"Making the built-in '{preset}' model (random weights) in {target} (once)...");
        var staging = $"{target}.tmp-{Environment.ProcessId}";
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            ModelMaker.Make(ModelPresets.Get(preset), staging);
            Directory.Move(staging, target);
        }
        catch (IOException) when (File.Exists(Path.Combine(target, "model.safetensors")))
        {
            Directory.Delete(staging, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot make the built-in '{preset}' model in {target}: {e.Message} (set ROUTEREPLAY_CACHE to a writable folder)", e);
        }
        return target;
    }
}
