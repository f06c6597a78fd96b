namespace RouteReplay.Server.Http;

/// <summary>
/// The request fields of one API as its clients write them, for the engine's parameter names (<c>top_p</c> is
/// <c>sampling_params.top_p</c> on <c>/generate</c>, <c>prompt</c> is <c>messages</c> in a chat), so an error the engine
/// raises names the field the client wrote.
/// </summary>
public sealed class FieldNames(IReadOnlyDictionary<string, string> byEngineName)
{
    /// <summary>The engine's names, a request id written as SGLang's <c>rid</c>.</summary>
    public static FieldNames Engine { get; } = new(new Dictionary<string, string>
    {
        ["request"] = "prompt",
        ["prompt_token_ids"] = "prompt",
        ["request_id"] = "rid",
    });

    /// <summary>The field the client wrote for <paramref name="engineName"/>.</summary>
    public string this[string engineName] => byEngineName.GetValueOrDefault(engineName, engineName);

    /// <summary>These names with <paramref name="more"/> added (or replacing theirs).</summary>
    public FieldNames With(IEnumerable<KeyValuePair<string, string>> more)
    {
        var names = new Dictionary<string, string>(byEngineName);
        foreach (var (engine, client) in more)
        {
            names[engine] = client;
        }
        return new FieldNames(names);
    }

    /// <summary>
    /// A 400 for the engine's refusal <paramref name="error"/>: its <c>param</c> the client's field, and a message that
    /// starts with the engine's name starting with the client's instead.
    /// </summary>
    public ApiException BadRequest(ArgumentException error)
    {
        var message = UserErrors.Message(error);
        if (error.ParamName is not { } engineName)
        {
            return ApiException.BadRequest(message);
        }
        var field = this[engineName];
        if (message.StartsWith(engineName + " ", StringComparison.Ordinal))
        {
            message = field + message[engineName.Length..];
        }
        return ApiException.BadRequest(message, field);
    }
}
