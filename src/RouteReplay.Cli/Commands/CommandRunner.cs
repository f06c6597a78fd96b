using System.CommandLine;
using System.Text.RegularExpressions;
using RouteReplay.Backends.Cuda;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Server.Http;

namespace RouteReplay.Cli.Commands;

/// <summary>
/// Runs the parsed command and turns every expected failure into one line on stderr: exit code 2 for bad flags or input
/// (values, files, checkpoints), 1 for a command that could not do its work (a busy port, an unreachable server, I/O).
/// Only a bug gets a stack trace.
/// </summary>
internal static partial class CommandRunner
{
    public const int BadInput = 2;
    public const int Failed = 1;

    public static int Invoke(RootCommand root, string[] args)
    {
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            var command = parsed.CommandResult.Command is RootCommand ? "routereplay" : $"routereplay {parsed.CommandResult.Command.Name}";
            Console.Error.WriteLine($"error: {TypeName().Replace(parsed.Errors[0].Message, "").TrimEnd('.')} (see '{command} --help')");
            return BadInput;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            var error = e is AggregateException { InnerExceptions.Count: 1 } aggregate ? aggregate.InnerExceptions[0] : e;
            if (ExitCodeOf(error) is not { } code)
            {
                Console.Error.WriteLine($"error: internal error (a bug; please report it with the trace below): {error}");
                return Failed;
            }
            Console.Error.WriteLine($"error: {OneLine(UserErrors.Message(error))}");
            return code;
        }
    }

    private static int? ExitCodeOf(Exception error) => error switch
    {
        ArgumentException or CheckpointException or InvalidDataException or NotSupportedException or ApiException or CudaUnavailableException => BadInput,
        FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException => BadInput,
        CommandFailedException or IOException or HttpRequestException or CudaException => Failed,
        _ => null,
    };

    private static string OneLine(string message) => message.ReplaceLineEndings(" ");

    /// <summary>System.CommandLine's " as expected type 'System.X'" (flags parsed here never produce it; a safety net).</summary>
    [GeneratedRegex(" as expected type '[^']*'")]
    private static partial Regex TypeName();
}
