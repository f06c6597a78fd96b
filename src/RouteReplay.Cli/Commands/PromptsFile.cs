using System.Text.Json;
using RouteReplay.Model.Tokenization;
using RouteReplay.Server.Http;

namespace RouteReplay.Cli.Commands;

/// <summary>One request of a prompts file, checked but not yet tokenized. Sampling fields left out are null.</summary>
internal sealed record PromptLine(int Line, string? Prompt, IReadOnlyList<ChatMessage>? Messages, int? MaxTokens, ulong? Seed, float? Temperature, float? TopP, int? TopK, int N);

/// <summary>
/// Reads a JSONL file of requests, one per line: <c>prompt</c> (text) or <c>messages</c> (chat), and optional
/// <c>max_tokens</c>, <c>seed</c>, <c>n</c>, <c>temperature</c>, <c>top_p</c>, <c>top_k</c>, with the server's rules for
/// each field. Blank lines are skipped but still counted, so request names follow line numbers (from 0). Every line is
/// checked before any model loads; a bad one names the file, the line (from 1) and the field.
/// </summary>
internal static class PromptsFile
{
    /// <exception cref="ArgumentException">The file is missing or a line is not a valid request.</exception>
    public static List<PromptLine> Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new ArgumentException($"--prompts-file '{path}' {(Directory.Exists(path) ? "is a folder; give a JSONL file" : "does not exist")}", "prompts-file");
        }
        var lines = File.ReadAllLines(path);
        var requests = new List<PromptLine>();
        for (var line = 0; line < lines.Length; line++)
        {
            if (string.IsNullOrWhiteSpace(lines[line]))
            {
                continue;
            }
            try
            {
                using var document = JsonDocument.Parse(lines[line]);
                requests.Add(Parse(document.RootElement, line));
            }
            catch (Exception e) when (e is JsonException or ApiException or ArgumentException)
            {
                throw new ArgumentException($"--prompts-file {path} line {line + 1}: {UserErrors.Message(e)}", "prompts-file", e);
            }
        }
        if (requests.Count == 0)
        {
            throw new ArgumentException($"--prompts-file {path} has no requests", "prompts-file");
        }
        return requests;
    }

    private static PromptLine Parse(JsonElement root, int line)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new ArgumentException("each line must be a JSON object");
        }
        var fields = new RequestFields(root);
        var prompt = fields.String("prompt");
        IReadOnlyList<ChatMessage>? messages = fields.TryGet("messages", out var list) ? Messages(list) : null;
        if ((prompt is null) == (messages is null))
        {
            throw new ArgumentException("the line needs 'prompt' or 'messages' (one of them)");
        }
        return new PromptLine(
            line,
            prompt,
            messages,
            fields.Int32("max_tokens", 1, int.MaxValue),
            fields.Int64("seed", 0, long.MaxValue) is { } seed ? (ulong)seed : null,
            (float?)fields.Number("temperature", 0, 100),
            (float?)fields.Number("top_p", 0, 1),
            fields.Int32("top_k", -1, 1 << 20),
            fields.Int32("n", 1, 128) ?? 1);
    }

    private static List<ChatMessage> Messages(JsonElement list)
    {
        if (list.ValueKind != JsonValueKind.Array || list.GetArrayLength() == 0)
        {
            throw new ArgumentException("'messages' must be a non-empty array of {role, content} objects");
        }
        var messages = new List<ChatMessage>();
        var index = 0;
        foreach (var item in list.EnumerateArray())
        {
            var name = $"messages[{index++}]";
            if (item.ValueKind != JsonValueKind.Object)
            {
                throw new ArgumentException($"'{name}' must be an object with role and content");
            }
            var message = new RequestFields(item, name + ".");
            var role = message.String("role", 64) ?? throw new ArgumentException($"'{name}.role' is required");
            var content = message.String("content") ?? throw new ArgumentException($"'{name}.content' is required (a string)");
            messages.Add(new ChatMessage(role, content));
        }
        return messages;
    }
}
