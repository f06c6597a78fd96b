namespace RouteReplay;

/// <summary>Error text fit to show a user: what went wrong and the field or flag, without .NET's decorations.</summary>
public static class UserErrors
{
    /// <summary>
    /// The exception's message; for an <see cref="ArgumentException"/> without the <c>" (Parameter 'name')"</c> suffix
    /// (and the <c>"Actual value was ..."</c> line after it) that .NET appends when a parameter name is set.
    /// </summary>
    public static string Message(Exception error)
    {
        ArgumentNullException.ThrowIfNull(error);
        var message = error.Message;
        if (error is ArgumentException { ParamName: { } name })
        {
            var at = message.IndexOf($" (Parameter '{name}')", StringComparison.Ordinal);
            if (at >= 0)
            {
                message = message[..at];
            }
        }
        return message;
    }
}
