using System.Text.Json;
using RouteReplay.Engine;
using RouteReplay.Model.Tokenization;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.OpenAi;

/// <summary>A parsed <c>/v1/completions</c> or <c>/v1/chat/completions</c> request.</summary>
/// <param name="Names">The request's fields as the client wrote them, for the engine's refusals.</param>
public sealed record OpenAiRequest(
    EngineRequest Engine,
    bool Chat,
    bool Stream,
    bool IncludeUsage,
    bool ReturnTokenIds,
    int? TopLogprobs,
    IReadOnlyList<string> IgnoredFields,
    FieldNames Names);

/// <summary>Turns an OpenAI request body into an engine request; every bad value is a 400 naming its field.</summary>
public static class OpenAiRequestParser
{
    /// <summary>Most items a list field (token ids, messages) may hold.</summary>
    public const int MaxListItems = 1 << 20;

    private static readonly HashSet<string> CommonFields =
    [
        "model", "max_tokens", "temperature", "top_p", "top_k", "seed", "n", "stop", "stop_token_ids", "ignore_eos",
        "stream", "stream_options", "return_token_ids", "return_routed_experts", "routed_experts_start", "logprobs",
        "include_stop_str_in_output",
    ];

    private static readonly HashSet<string> CompletionFields = [.. CommonFields, "prompt"];

    private static readonly HashSet<string> ChatFields = [.. CommonFields, "messages", "max_completion_tokens", "top_logprobs", "chat_template_kwargs"];

    private static readonly FieldNames ChatNames = FieldNames.Engine.With(new Dictionary<string, string>
    {
        ["prompt"] = "messages",
        ["request"] = "messages",
        ["prompt_token_ids"] = "messages",
        ["logprobs"] = "top_logprobs",
    });

    public static OpenAiRequest Parse(JsonElement body, bool chat, EngineHost host, string requestId)
    {
        var fields = new RequestFields(body);
        if (fields.String("model", 1024) is { } model && model != host.ModelName)
        {
            throw new ApiException(404, $"the model '{model}' does not exist; this server serves '{host.ModelName}'", "model", "model_not_found");
        }
        var prompt = chat ? ChatPrompt(fields, host.Tokenizer) : CompletionPrompt(fields, host);
        var maxTokens = fields.Int32("max_tokens", 1, int.MaxValue);
        var budgetField = "max_tokens";
        if (chat && fields.Int32("max_completion_tokens", 1, int.MaxValue) is { } completionTokens)
        {
            maxTokens = completionTokens;
            budgetField = "max_completion_tokens";
        }
        if (maxTokens is { } budget && prompt.Count < host.EngineOptions.MaxModelLen)
        {
            CheckFitsModelLength(prompt.Count, budget, host.EngineOptions.MaxModelLen, budgetField, budgetField);
        }
        int? logprobs = null;
        if (chat)
        {
            if (fields.Bool("logprobs") == true)
            {
                logprobs = fields.Int32("top_logprobs", 0, 20) ?? 0;
            }
            else if (fields.Has("top_logprobs"))
            {
                fields.Int32("top_logprobs", 0, 20);
            }
        }
        else
        {
            logprobs = fields.Int32("logprobs", 0, 20);
        }
        var streamOptions = fields.Object("stream_options");
        var stream = fields.Bool("stream") ?? false;
        var names = (chat ? ChatNames : FieldNames.Engine).With([new("max_tokens", budgetField)]);
        var sampling = Sampling(fields, host.ModelConfig.VocabSize, maxTokens, names);
        var request = new EngineRequest
        {
            RequestId = requestId,
            PromptTokenIds = prompt,
            Sampling = sampling,
            N = host.AdmissibleChoices(fields.Int32("n", 1, 128) ?? 1, "n"),
            ReturnRouting = fields.Bool("return_routed_experts") ?? false,
            RoutingStart = fields.Int32("routed_experts_start", 0, int.MaxValue) ?? 0,
            Logprobs = logprobs,
        };
        return new OpenAiRequest(
            request,
            chat,
            stream,
            streamOptions?.Bool("include_usage") ?? false,
            fields.Bool("return_token_ids") ?? false,
            logprobs,
            fields.UnknownFields(chat ? ChatFields : CompletionFields),
            names);
    }

    /// <summary>The sampling fields shared by the OpenAI endpoints.</summary>
    private static SamplingParams Sampling(RequestFields fields, int vocabSize, int? maxTokens, FieldNames names)
    {
        var topK = fields.Int32("top_k", -1, 1 << 20) ?? 0;
        var seed = fields.Int64("seed", long.MinValue, long.MaxValue);
        var sampling = new SamplingParams
        {
            Temperature = (float)(fields.Number("temperature", 0, 100) ?? 1),
            TopP = (float)(fields.Number("top_p", 0, 1) ?? 1),
            TopK = topK < 0 ? 0 : topK,
            Seed = seed is { } s ? unchecked((ulong)s) : null,
            MaxTokens = maxTokens,
            Stop = fields.StringOrStrings("stop", 16),
            StopTokenIds = fields.Ints("stop_token_ids", 0, vocabSize - 1, 1024),
            IgnoreEos = fields.Bool("ignore_eos") ?? false,
            IncludeStopStringInOutput = fields.Bool("include_stop_str_in_output") ?? false,
        };
        return Validated(sampling, names);
    }

    /// <summary>
    /// A 400 naming <paramref name="param"/> when the prompt plus an explicit budget exceed the model length (the engine
    /// checks the same, naming <c>max_tokens</c>); <paramref name="field"/> is the name the message uses.
    /// </summary>
    public static void CheckFitsModelLength(int promptTokens, int maxTokens, int maxModelLen, string param, string field)
    {
        try
        {
            EngineRequest.CheckFitsModelLength(promptTokens, maxTokens, maxModelLen, field);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest(UserErrors.Message(e), param);
        }
    }

    /// <summary>Runs <see cref="SamplingParams.Validate"/>, turning its error into a 400 naming the field as <paramref name="names"/> write it.</summary>
    public static SamplingParams Validated(SamplingParams sampling, FieldNames names)
    {
        try
        {
            sampling.Validate();
        }
        catch (ArgumentException e)
        {
            throw names.BadRequest(e);
        }
        return sampling;
    }

    private static IReadOnlyList<int> CompletionPrompt(RequestFields fields, EngineHost host)
    {
        if (!fields.TryGet("prompt", out var prompt))
        {
            throw ApiException.BadRequest("'prompt' is required: a string or an array of token ids", "prompt");
        }
        if (prompt.ValueKind == JsonValueKind.Array && prompt.GetArrayLength() == 1 && prompt[0].ValueKind is JsonValueKind.String or JsonValueKind.Array)
        {
            prompt = prompt[0];
        }
        return prompt.ValueKind switch
        {
            JsonValueKind.String => host.Tokenizer.Encode(RequestFields.Text(prompt, "prompt")),
            JsonValueKind.Array when prompt.GetArrayLength() > 0 && prompt[0].ValueKind != JsonValueKind.Number =>
                throw ApiException.BadRequest("'prompt' must be one string or one array of token ids; batched prompts are not supported", "prompt"),
            JsonValueKind.Array => RequestFields.IntArray(prompt, "prompt", 0, host.ModelConfig.VocabSize - 1, MaxListItems),
            _ => throw ApiException.BadRequest($"'prompt' must be a string or an array of token ids, got {RequestFields.Show(prompt)}", "prompt"),
        };
    }

    private static IReadOnlyList<int> ChatPrompt(RequestFields fields, TextTokenizer tokenizer)
    {
        if (!fields.TryGet("messages", out var messages))
        {
            throw ApiException.BadRequest("'messages' is required: an array of {role, content} objects", "messages");
        }
        if (messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
        {
            throw ApiException.BadRequest("'messages' must be a non-empty array of {role, content} objects", "messages");
        }
        var list = new List<ChatMessage>(messages.GetArrayLength());
        var index = 0;
        foreach (var item in messages.EnumerateArray())
        {
            var name = $"messages[{index++}]";
            if (item.ValueKind != JsonValueKind.Object)
            {
                throw ApiException.BadRequest($"'{name}' must be an object with role and content", name);
            }
            var message = new RequestFields(item, name + ".");
            var role = message.String("role", 64) ?? throw ApiException.BadRequest($"'{name}.role' is required", name + ".role");
            var content = MessageContent(message, name);
            try
            {
                list.Add(new ChatMessage(role, content, message.String("reasoning_content")));
            }
            catch (ArgumentException e)
            {
                throw ApiException.BadRequest(UserErrors.Message(e), name + ".role");
            }
        }
        var kwargs = fields.Object("chat_template_kwargs");
        var enableThinking = kwargs?.Bool("enable_thinking") ?? true;
        try
        {
            return tokenizer.Encode(tokenizer.ApplyChatTemplate(list, addGenerationPrompt: true, enableThinking));
        }
        catch (Exception e) when (e is NotSupportedException or ArgumentException or InvalidOperationException)
        {
            throw ApiException.BadRequest($"the messages cannot be rendered with the chat template: {UserErrors.Message(e)}", "messages");
        }
    }

    /// <summary>A message's content: a string, or an array of <c>{"type": "text", "text": ...}</c> parts joined.</summary>
    private static string MessageContent(RequestFields message, string name)
    {
        if (!message.TryGet("content", out var content))
        {
            return "";
        }
        if (content.ValueKind == JsonValueKind.String)
        {
            return RequestFields.Text(content, name + ".content");
        }
        if (content.ValueKind != JsonValueKind.Array)
        {
            throw ApiException.BadRequest($"'{name}.content' must be a string or an array of text parts", name + ".content");
        }
        var text = new System.Text.StringBuilder();
        foreach (var part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object
                || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || RequestFields.Text(type, name + ".content") != "text"
                || !part.TryGetProperty("text", out var value) || value.ValueKind != JsonValueKind.String)
            {
                throw ApiException.BadRequest($"'{name}.content' parts must be {{\"type\": \"text\", \"text\": \"...\"}}; other kinds are not supported", name + ".content");
            }
            text.Append(RequestFields.Text(value, name + ".content"));
        }
        return text.ToString();
    }
}
