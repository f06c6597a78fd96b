namespace RouteReplay.Model.Checkpoints;

/// <summary>
/// A checkpoint, safetensors file or model configuration is missing, malformed or inconsistent.
/// The message always names the file and, where one is involved, the field or tensor.
/// </summary>
public sealed class CheckpointException : Exception
{
    /// <summary>Creates the exception; <paramref name="message"/> must name the file and the field.</summary>
    /// <param name="fileName">The file (or folder) the problem was found in.</param>
    /// <param name="field">The config field or tensor name at fault, or null when the file as a whole is.</param>
    /// <param name="message">A complete, human-readable description naming the file and the field.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    public CheckpointException(string fileName, string? field, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        FileName = fileName;
        Field = field;
    }

    /// <summary>The file (or folder) the problem was found in.</summary>
    public string FileName { get; }

    /// <summary>The config field or tensor name at fault, or null when the file as a whole is.</summary>
    public string? Field { get; }
}
