namespace RouteReplay.Cli.Commands;

/// <summary>Checks, before any work, that the files and folders a command will write can be written.</summary>
internal static class OutputPaths
{
    /// <exception cref="ArgumentException">The file cannot be created or overwritten (naming <paramref name="flag"/>).</exception>
    public static void CheckFile(string? path, string flag)
    {
        if (path is null)
        {
            return;
        }
        var full = Path.GetFullPath(path);
        if (Directory.Exists(full))
        {
            throw Error(flag, path, "is a folder; give a file path");
        }
        var parent = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(parent))
        {
            throw Error(flag, path, File.Exists(parent) ? $"'{parent}' is a file, not a folder" : $"the folder '{parent}' does not exist");
        }
        Probe(flag, path, () => File.Exists(full)
            ? new FileStream(full, FileMode.Open, FileAccess.Write)
            : new FileStream(full, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose));
    }

    /// <summary>Creates the folder when needed and checks that files can be created in it.</summary>
    /// <exception cref="ArgumentException">It cannot (naming <paramref name="flag"/>).</exception>
    public static void CheckFolder(string? path, string flag)
    {
        if (path is null)
        {
            return;
        }
        var full = Path.GetFullPath(path);
        if (File.Exists(full))
        {
            throw Error(flag, path, "is a file; give a folder");
        }
        Probe(flag, path, () =>
        {
            Directory.CreateDirectory(full);
            return new FileStream(Path.Combine(full, $".routereplay-write-check-{Environment.ProcessId}"), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose);
        });
    }

    private static void Probe(string flag, string path, Func<FileStream> open)
    {
        try
        {
            open().Dispose();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Error(flag, path, $"cannot be written: {e.Message}");
        }
    }

    private static ArgumentException Error(string flag, string path, string problem) =>
        new($"{flag} '{path}' {problem}", flag.TrimStart('-'));
}
