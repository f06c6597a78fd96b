using System.Text.Json;

namespace RouteReplay.Model.Tokenization;

/// <summary>What RouteReplay uses from a Hugging Face tokenizer_config.json.</summary>
/// <param name="EosToken">The end-of-sequence token's text, if the file names one.</param>
/// <param name="ChatTemplate">The Jinja chat template, if the file has one.</param>
internal sealed record TokenizerConfig(string? EosToken, string? ChatTemplate)
{
    public const string FileName = "tokenizer_config.json";

    public static TokenizerConfig Read(string directory)
    {
        var file = new TokenizerJsonReader(Path.Combine(directory, FileName));
        using var document = file.Open();
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw file.Invalid("the top level must be an object.");
        }
        return new TokenizerConfig(ReadEosToken(file, root), ReadChatTemplate(file, root));
    }

    private static string? ReadEosToken(TokenizerJsonReader file, JsonElement root) => file.Optional(root, "eos_token") switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } text => text.GetString(),
        { ValueKind: JsonValueKind.Object } token => file.RequiredString(token, "content", "eos_token.content"),
        _ => throw file.Invalid("'eos_token' must be a string or an object with 'content'."),
    };

    private static string? ReadChatTemplate(TokenizerJsonReader file, JsonElement root) => file.Optional(root, "chat_template") switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } text => text.GetString(),
        { ValueKind: JsonValueKind.Array } named => DefaultOf(file, named),
        _ => throw file.Invalid("'chat_template' must be a string or a list of {name, template}."),
    };

    private static string? DefaultOf(TokenizerJsonReader file, JsonElement namedTemplates)
    {
        foreach (var entry in namedTemplates.EnumerateArray())
        {
            if (file.OptionalString(entry, "name") == "default")
            {
                return file.RequiredString(entry, "template", "chat_template[].template");
            }
        }
        return null;
    }
}
