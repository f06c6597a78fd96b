namespace RouteReplay.Model.Tokenization;

/// <summary>The exceptions for a tokenizer file that is missing or malformed; each names the file.</summary>
internal static class TokenizerFileError
{
    public static Exception Missing(string path) =>
        new InvalidDataException($"Tokenizer file '{path}' was not found.", new FileNotFoundException(null, path));

    public static Exception Unreadable(string path, Exception inner) =>
        new InvalidDataException($"Tokenizer file '{path}' cannot be read: {inner.Message}", inner);

    public static Exception Invalid(string path, string detail, Exception? inner = null) =>
        new InvalidDataException($"Tokenizer file '{path}' is invalid: {detail}", inner);
}
