using System.CommandLine;
using RouteReplay.Disaggregation;

namespace RouteReplay.Cli.Commands;

/// <summary>
/// The cluster key of <c>serve</c> (prefill and decode roles) and <c>router</c>: <c>--cluster-key KEY</c>,
/// <c>--cluster-key-file PATH</c> (the file's first 4 KiB, trailing whitespace trimmed), or the environment variable
/// <see cref="EnvironmentVariable"/>, so that the key need not show in the process list.
/// </summary>
internal sealed class ClusterKeyFlags
{
    public const string EnvironmentVariable = "ROUTEREPLAY_CLUSTER_KEY";

    private const int MaxFileBytes = 4096;

    private readonly Option<string?> _key = new("--cluster-key")
    {
        Description = $"Secret shared by the router and its prefill and decode servers (at least {ClusterKey.MinLength} characters): decode servers use only prefill servers the router signed with it, prefill servers serve only transfers signed with it. Also --cluster-key-file or ${EnvironmentVariable}.",
        HelpName = "KEY",
    };

    private readonly Option<string?> _file = new("--cluster-key-file")
    {
        Description = "Read the cluster key from this file (trailing whitespace trimmed), keeping it out of the process list.",
        HelpName = "PATH",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(_key);
        command.Options.Add(_file);
    }

    /// <summary>True when a flag names a key (the environment variable does not count).</summary>
    public bool IsGiven(ParseResult parse) => Flags.IsGiven(parse, _key) || Flags.IsGiven(parse, _file);

    /// <summary>The key from the flag, the file or the environment; null when none gives one.</summary>
    /// <exception cref="ArgumentException">Both flags are given, the file cannot be read, or the key is too short.</exception>
    public ClusterKey? Read(ParseResult parse)
    {
        var key = parse.GetValue(_key);
        var file = parse.GetValue(_file);
        if (key is not null && file is not null)
        {
            throw new ArgumentException("give --cluster-key or --cluster-key-file, not both", "cluster-key");
        }
        if (key is not null)
        {
            return Create(key, "--cluster-key");
        }
        if (file is not null)
        {
            return Create(ReadFile(file), $"--cluster-key-file '{file}'");
        }
        return Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } fromEnvironment ? Create(fromEnvironment, $"${EnvironmentVariable}") : null;
    }

    private static ClusterKey Create(string key, string source) =>
        key.Length >= ClusterKey.MinLength
            ? new ClusterKey(key)
            : throw new ArgumentException($"{source} holds a key of {key.Length} characters; a cluster key needs at least {ClusterKey.MinLength} (e.g. the output of 'openssl rand -hex 32')", "cluster-key");

    private static string ReadFile(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.None);
            var buffer = new byte[MaxFileBytes];
            var length = 0;
            int read;
            while (length < buffer.Length && (read = stream.Read(buffer, length, buffer.Length - length)) > 0)
            {
                length += read;
            }
            return System.Text.Encoding.UTF8.GetString(buffer, 0, length).TrimEnd();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"--cluster-key-file '{path}' cannot be read: {e.Message}", "cluster-key-file");
        }
    }
}
