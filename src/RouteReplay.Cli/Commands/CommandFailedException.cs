namespace RouteReplay.Cli.Commands;

/// <summary>A command that could not do its work for a reason outside the user's input (a server that cannot be reached); exit code 1.</summary>
internal sealed class CommandFailedException(string message, Exception? inner = null) : Exception(message, inner);
