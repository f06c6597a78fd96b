using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using RouteReplay.Model.Tokenization;
using RouteReplay.Server.Disaggregation;

namespace RouteReplay.Tests.Support;

/// <summary>
/// A multi-turn rollout workload: conversations run at once, each one's turns one after another, each turn's prompt
/// the previous turn's prompt, its answer and a new user message. Two in three conversations send token ids to
/// <c>/generate</c>, the others messages to <c>/v1/chat/completions</c>; seeded sampling, routing returned.
/// </summary>
public static class Conversations
{
    /// <summary>
    /// One turn's answer: what must match a reference (tokens, routing, finish reason) and, through a router over
    /// workers, the worker that answered and why it was chosen.
    /// </summary>
    public sealed record Turn(int Conversation, int Index, string Answer, string Worker, string Choice);

    public static async Task<Turn[]> RunAsync(HttpClient client, TextTokenizer tokenizer, int conversations, int turns)
    {
        var runs = Enumerable.Range(0, conversations).Select(c => c % 3 == 2 ? ChatAsync(client, c, turns) : GenerateAsync(client, tokenizer, c, turns));
        return [.. (await Task.WhenAll(runs)).SelectMany(t => t).OrderBy(t => t.Conversation).ThenBy(t => t.Index)];
    }

    private static string Opening(int conversation) =>
        $"Conversation {conversation}: describe expert {conversation * 7 + 3}, the tokens it routed in layer {conversation % 3}, and why.";

    private static async Task<List<Turn>> GenerateAsync(HttpClient client, TextTokenizer tokenizer, int conversation, int turns)
    {
        var ids = tokenizer.Encode(Opening(conversation)).ToList();
        var answers = new List<Turn>();
        for (var t = 0; t < turns; t++)
        {
            var body = new JsonObject
            {
                ["input_ids"] = new JsonArray([.. ids.Select(i => JsonValue.Create(i))]),
                ["return_routed_experts"] = true,
                ["sampling_params"] = new JsonObject { ["max_new_tokens"] = 10, ["temperature"] = 0.9, ["top_k"] = 40, ["sampling_seed"] = conversation * 10 + t, ["ignore_eos"] = true },
            };
            var (answer, worker, choice) = await PostAsync(client, "/generate", body);
            var meta = answer.GetProperty("meta_info");
            answers.Add(new Turn(conversation, t, $"{answer.GetProperty("output_ids").GetRawText()}|{meta.GetProperty("routed_experts").GetString()}|{meta.GetProperty("finish_reason").GetRawText()}", worker, choice));
            ids.AddRange(answer.GetProperty("output_ids").EnumerateArray().Select(e => e.GetInt32()));
            ids.AddRange(tokenizer.Encode($" Then turn {t + 1}: what did expert {conversation} do next?"));
        }
        return answers;
    }

    private static async Task<List<Turn>> ChatAsync(HttpClient client, int conversation, int turns)
    {
        var messages = new JsonArray { new JsonObject { ["role"] = "user", ["content"] = Opening(conversation) } };
        var answers = new List<Turn>();
        for (var t = 0; t < turns; t++)
        {
            var body = new JsonObject
            {
                ["model"] = "tiny",
                ["messages"] = messages.DeepClone(),
                ["max_tokens"] = 10,
                ["temperature"] = 0.9,
                ["seed"] = conversation * 10 + t,
                ["ignore_eos"] = true,
                ["return_routed_experts"] = true,
                ["return_token_ids"] = true,
            };
            var (answer, worker, choice) = await PostAsync(client, "/v1/chat/completions", body);
            var choices = answer.GetProperty("choices");
            answers.Add(new Turn(conversation, t, choices.GetRawText(), worker, choice));
            messages.Add(new JsonObject { ["role"] = "assistant", ["content"] = choices[0].GetProperty("message").GetProperty("content").GetString() });
            messages.Add(new JsonObject { ["role"] = "user", ["content"] = $"Then turn {t + 1}: what did expert {conversation} do next?" });
        }
        return answers;
    }

    private static async Task<(JsonElement Answer, string Worker, string Choice)> PostAsync(HttpClient client, string path, JsonObject body)
    {
        using var response = await client.PostAsync(path, new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{path}: {(int)response.StatusCode} {text}");
        string Header(string name) => response.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : "";
        using var document = JsonDocument.Parse(text);
        return (document.RootElement.Clone(), Header(FleetHeaders.Worker), Header(FleetHeaders.Choice));
    }
}
