using System.Text.Json;
using RouteReplay.Engine;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.OpenAi;

/// <summary>Writes the JSON of one OpenAI completion or chat completion: whole, or as stream chunks.</summary>
public sealed class OpenAiResponse(EngineHost host, OpenAiRequest request, string id, long created)
{
    private readonly int[] _textOffsets = new int[request.Engine.N];

    private string Object => request.Chat ? (request.Stream ? "chat.completion.chunk" : "chat.completion") : "text_completion";

    public static string FinishReasonName(FinishReason reason) => reason switch
    {
        FinishReason.Stop => "stop",
        FinishReason.Length => "length",
        _ => "abort",
    };

    public void WriteFull(Utf8JsonWriter writer, RequestResult result)
    {
        WriteHeader(writer);
        if (request.ReturnTokenIds)
        {
            WriteIds(writer, "prompt_token_ids", result.PromptTokenIds);
        }
        writer.WriteStartArray("choices");
        foreach (var choice in result.Choices)
        {
            writer.WriteStartObject();
            writer.WriteNumber("index", choice.Index);
            if (request.Chat)
            {
                writer.WriteStartObject("message");
                writer.WriteString("role", "assistant");
                writer.WriteString("content", choice.Text);
                writer.WriteEndObject();
            }
            else
            {
                writer.WriteString("text", choice.Text);
            }
            WriteLogprobs(writer, choice.Index, choice.Logprobs);
            writer.WriteString("finish_reason", FinishReasonName(choice.FinishReason));
            if (request.ReturnTokenIds)
            {
                WriteIds(writer, "token_ids", choice.TokenIds);
            }
            WriteRouting(writer, choice);
            writer.WriteEndObject();
        }
        writer.WriteEndArray();
        WriteUsage(writer, result.Usage);
        writer.WriteEndObject();
    }

    /// <summary>Chat: one chunk per choice with the assistant role (and the prompt's token ids when asked).</summary>
    public void WriteStart(SseWriter sse)
    {
        if (!request.Chat && !request.ReturnTokenIds)
        {
            return;
        }
        var writer = sse.BeginEvent();
        WriteHeader(writer);
        if (request.ReturnTokenIds)
        {
            WriteIds(writer, "prompt_token_ids", request.Engine.PromptTokenIds);
        }
        writer.WriteStartArray("choices");
        if (request.Chat)
        {
            for (var i = 0; i < request.Engine.N; i++)
            {
                writer.WriteStartObject();
                writer.WriteNumber("index", i);
                writer.WriteStartObject("delta");
                writer.WriteString("role", "assistant");
                writer.WriteString("content", "");
                writer.WriteEndObject();
                writer.WriteNull("logprobs");
                writer.WriteNull("finish_reason");
                writer.WriteEndObject();
            }
        }
        writer.WriteEndArray();
        writer.WriteEndObject();
        sse.EndEvent();
    }

    public void WriteDelta(SseWriter sse, StreamDelta delta)
    {
        var writer = sse.BeginEvent();
        WriteHeader(writer);
        writer.WriteStartArray("choices");
        writer.WriteStartObject();
        writer.WriteNumber("index", delta.Choice);
        if (request.Chat)
        {
            writer.WriteStartObject("delta");
            writer.WriteString("content", delta.Text);
            writer.WriteEndObject();
        }
        else
        {
            writer.WriteString("text", delta.Text);
        }
        WriteLogprobs(writer, delta.Choice, delta.Logprobs);
        writer.WriteNull("finish_reason");
        if (request.ReturnTokenIds)
        {
            WriteIds(writer, "token_ids", delta.TokenIds);
        }
        writer.WriteEndObject();
        writer.WriteEndArray();
        writer.WriteEndObject();
        sse.EndEvent();
    }

    /// <summary>Each choice's final chunk (finish reason and routing), then the usage chunk when asked.</summary>
    public void WriteFinish(SseWriter sse, RequestResult result)
    {
        foreach (var choice in result.Choices)
        {
            var writer = sse.BeginEvent();
            WriteHeader(writer);
            writer.WriteStartArray("choices");
            writer.WriteStartObject();
            writer.WriteNumber("index", choice.Index);
            if (request.Chat)
            {
                writer.WriteStartObject("delta");
                writer.WriteEndObject();
            }
            else
            {
                writer.WriteString("text", "");
            }
            writer.WriteNull("logprobs");
            writer.WriteString("finish_reason", FinishReasonName(choice.FinishReason));
            WriteRouting(writer, choice);
            writer.WriteEndObject();
            writer.WriteEndArray();
            writer.WriteEndObject();
            sse.EndEvent();
        }
        if (request.IncludeUsage)
        {
            var writer = sse.BeginEvent();
            WriteHeader(writer);
            writer.WriteStartArray("choices");
            writer.WriteEndArray();
            WriteUsage(writer, result.Usage);
            writer.WriteEndObject();
            sse.EndEvent();
        }
    }

    private void WriteHeader(Utf8JsonWriter writer)
    {
        writer.WriteStartObject();
        writer.WriteString("id", id);
        writer.WriteString("object", Object);
        writer.WriteNumber("created", created);
        writer.WriteString("model", host.ModelName);
    }

    private void WriteRouting(Utf8JsonWriter writer, ChoiceResult choice)
    {
        if (request.Engine.ReturnRouting && choice.Routing is { } routing)
        {
            host.Metrics.AddRoutingBytes(RoutingWire.Write(writer, "routed_experts", routing));
        }
    }

    private static void WriteUsage(Utf8JsonWriter writer, Usage usage)
    {
        writer.WriteStartObject("usage");
        writer.WriteNumber("prompt_tokens", usage.PromptTokens);
        writer.WriteNumber("completion_tokens", usage.CompletionTokens);
        writer.WriteNumber("total_tokens", usage.TotalTokens);
        writer.WriteStartObject("prompt_tokens_details");
        writer.WriteNumber("cached_tokens", usage.CachedPromptTokens);
        writer.WriteEndObject();
        writer.WriteEndObject();
    }

    public static void WriteIds(Utf8JsonWriter writer, string name, IReadOnlyList<int> ids)
    {
        writer.WriteStartArray(name);
        for (var i = 0; i < ids.Count; i++)
        {
            writer.WriteNumberValue(ids[i]);
        }
        writer.WriteEndArray();
    }

    private void WriteLogprobs(Utf8JsonWriter writer, int choice, IReadOnlyList<TokenLogprob>? logprobs)
    {
        if (request.TopLogprobs is null || logprobs is null)
        {
            writer.WriteNull("logprobs");
            return;
        }
        var tokenizer = host.Tokenizer;
        writer.WriteStartObject("logprobs");
        if (request.Chat)
        {
            writer.WriteStartArray("content");
            foreach (var item in logprobs)
            {
                writer.WriteStartObject();
                WriteToken(writer, item.TokenId, item.Logprob);
                writer.WriteStartArray("top_logprobs");
                foreach (var (token, logprob) in item.TopAlternatives)
                {
                    writer.WriteStartObject();
                    WriteToken(writer, token, logprob);
                    writer.WriteEndObject();
                }
                writer.WriteEndArray();
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
        }
        else
        {
            writer.WriteStartArray("tokens");
            foreach (var item in logprobs)
            {
                writer.WriteStringValue(tokenizer.Decode([item.TokenId]));
            }
            writer.WriteEndArray();
            writer.WriteStartArray("token_logprobs");
            foreach (var item in logprobs)
            {
                writer.WriteNumberValue(item.Logprob);
            }
            writer.WriteEndArray();
            writer.WriteStartArray("top_logprobs");
            foreach (var item in logprobs)
            {
                writer.WriteStartObject();
                foreach (var (token, logprob) in item.TopAlternatives)
                {
                    writer.WriteNumber(tokenizer.Decode([token]), logprob);
                }
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
            writer.WriteStartArray("text_offset");
            foreach (var item in logprobs)
            {
                writer.WriteNumberValue(_textOffsets[choice]);
                _textOffsets[choice] += tokenizer.Decode([item.TokenId]).Length;
            }
            writer.WriteEndArray();
        }
        writer.WriteEndObject();
    }

    private void WriteToken(Utf8JsonWriter writer, int tokenId, float logprob)
    {
        var text = host.Tokenizer.Decode([tokenId]);
        writer.WriteString("token", text);
        writer.WriteNumber("logprob", logprob);
        writer.WriteStartArray("bytes");
        foreach (var b in System.Text.Encoding.UTF8.GetBytes(text))
        {
            writer.WriteNumberValue(b);
        }
        writer.WriteEndArray();
    }
}
