using System.CommandLine;
using RouteReplay.Backends.Cuda;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Cli.Commands;

/// <summary>Runs the parsed command and turns user errors into one clear line on stderr and exit code 2.</summary>
internal static class CommandRunner
{
    public static int Invoke(RootCommand root, string[] args)
    {
        var parsed = root.Parse(args);
        try
        {
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (e is CheckpointException or ArgumentException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException or NotSupportedException or CudaUnavailableException or CudaException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }
}
