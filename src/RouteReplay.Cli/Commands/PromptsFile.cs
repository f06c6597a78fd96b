using System.Text.Json;
using RouteReplay.Engine;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.Cli.Commands;

/// <summary>
/// Reads a JSONL file of requests, one per line: <c>prompt</c> (text) or <c>messages</c> (chat), and optional
/// <c>max_tokens</c>, <c>seed</c>, <c>n</c>, <c>temperature</c>, <c>top_p</c>, <c>top_k</c>. Blank lines are skipped
/// but still counted, so request names follow line numbers (from 0).
/// </summary>
internal static class PromptsFile
{
    public static List<(int Line, EngineRequest Request)> Read(string path, TextTokenizer tokenizer, SamplingParams defaults)
    {
        var requests = new List<(int, EngineRequest)>();
        var lines = File.ReadAllLines(path);
        for (var line = 0; line < lines.Length; line++)
        {
            if (string.IsNullOrWhiteSpace(lines[line]))
            {
                continue;
            }
            try
            {
                using var document = JsonDocument.Parse(lines[line]);
                requests.Add((line, Parse(document.RootElement, line, tokenizer, defaults)));
            }
            catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException or FormatException)
            {
                throw new ArgumentException($"{path} line {line + 1}: {e.Message}", e);
            }
        }
        return requests;
    }

    private static EngineRequest Parse(JsonElement root, int line, TextTokenizer tokenizer, SamplingParams defaults)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new ArgumentException("each line must be a JSON object");
        }
        string text;
        if (root.TryGetProperty("prompt", out var prompt))
        {
            text = prompt.GetString() ?? throw new ArgumentException("'prompt' must be a string");
        }
        else if (root.TryGetProperty("messages", out var messages))
        {
            var chat = messages.EnumerateArray()
                .Select(m => new ChatMessage(Required(m, "role"), Required(m, "content")))
                .ToArray();
            text = tokenizer.ApplyChatTemplate(chat, addGenerationPrompt: true);
        }
        else
        {
            throw new ArgumentException("the line needs 'prompt' or 'messages'");
        }
        var sampling = defaults with
        {
            MaxTokens = root.TryGetProperty("max_tokens", out var max) ? max.GetInt32() : defaults.MaxTokens,
            Seed = root.TryGetProperty("seed", out var seed) ? seed.GetUInt64() : defaults.Seed,
            Temperature = root.TryGetProperty("temperature", out var temperature) ? temperature.GetSingle() : defaults.Temperature,
            TopP = root.TryGetProperty("top_p", out var topP) ? topP.GetSingle() : defaults.TopP,
            TopK = root.TryGetProperty("top_k", out var topK) ? topK.GetInt32() : defaults.TopK,
        };
        return new EngineRequest
        {
            RequestId = $"line-{line}",
            PromptTokenIds = tokenizer.Encode(text),
            Sampling = sampling,
            N = root.TryGetProperty("n", out var n) ? n.GetInt32() : 1,
        };
    }

    private static string Required(JsonElement message, string field) =>
        message.TryGetProperty(field, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()!
            : throw new ArgumentException($"every message needs a string '{field}'");
}
