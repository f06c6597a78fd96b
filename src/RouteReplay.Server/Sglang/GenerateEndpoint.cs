using System.Diagnostics;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using RouteReplay.Engine;
using RouteReplay.Server.Http;
using RouteReplay.Server.OpenAi;

namespace RouteReplay.Server.Sglang;

/// <summary>
/// SGLang's native <c>POST /generate</c>: <c>text</c> or <c>input_ids</c> with <c>sampling_params</c>; answers
/// <c>{"text", "output_ids", "meta_info"}</c> (a list of them when n &gt; 1), streamed as SSE when asked.
/// </summary>
public sealed class GenerateEndpoint(EngineHost host, ILogger logger)
{
    /// <summary>SGLang's default <c>max_new_tokens</c>.</summary>
    public const int DefaultMaxNewTokens = 128;

    private static readonly HashSet<string> KnownFields =
    [
        "text", "input_ids", "sampling_params", "return_logprob", "top_logprobs_num", "return_text_in_logprobs",
        "return_routed_experts", "routed_experts_start_len", "stream", "rid", "logprob_start_len",
    ];

    private static readonly HashSet<string> KnownSamplingFields =
    [
        "max_new_tokens", "temperature", "top_p", "top_k", "stop", "stop_token_ids", "ignore_eos", "n", "seed", "sampling_seed", "no_stop_trim",
    ];

    private static readonly JsonElement EmptyObject = JsonDocument.Parse("{}").RootElement.Clone();

    /// <summary>SGLang's names for the engine's parameters (the prompt's, <c>text</c> or <c>input_ids</c>, is added per request).</summary>
    private static readonly FieldNames Names = FieldNames.Engine.With(new Dictionary<string, string>
    {
        ["temperature"] = "sampling_params.temperature",
        ["top_p"] = "sampling_params.top_p",
        ["top_k"] = "sampling_params.top_k",
        ["stop"] = "sampling_params.stop",
        ["max_tokens"] = "sampling_params.max_new_tokens",
        ["n"] = "sampling_params.n",
        ["routed_experts_start"] = "routed_experts_start_len",
        ["logprobs"] = "top_logprobs_num",
    });

    private sealed record Parsed(EngineRequest Request, bool Stream, bool ReturnLogprob, bool TextInLogprobs, FieldNames Names);

    public async Task HandleAsync(HttpContext context)
    {
        var clock = Stopwatch.StartNew();
        Parsed parsed;
        using (var body = await RequestBody.ReadObjectAsync(context, host.Options.MaxRequestBodyBytes).ConfigureAwait(false))
        {
            parsed = Parse(new RequestFields(body.RootElement));
        }
        using var running = await host.StartAsync(host.WithRemotePrefill(parsed.Request, context.Request), parsed.Names, context.RequestAborted).ConfigureAwait(false);
        if (parsed.Stream)
        {
            await StreamAsync(context, running, parsed, clock).ConfigureAwait(false);
            return;
        }
        var result = await EventStreamRelay.ResultAsync(context, running).ConfigureAwait(false);
        var outcome = EventStreamRelay.CheckResult(running, logger, result);
        context.Response.ContentType = "application/json";
        using (var writer = new Utf8JsonWriter(context.Response.BodyWriter, JsonOutput.Options))
        {
            var many = result.Choices.Count > 1;
            if (many)
            {
                writer.WriteStartArray();
            }
            foreach (var choice in result.Choices)
            {
                WriteChoice(writer, parsed, result, choice, choice.TokenIds, choice.Text, finished: true, clock, many);
            }
            if (many)
            {
                writer.WriteEndArray();
            }
        }
        running.CountOutcome(outcome);
        await context.Response.BodyWriter.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }

    private Parsed Parse(RequestFields fields)
    {
        var unknown = fields.UnknownFields(KnownFields);
        var sampling = fields.Object("sampling_params") ?? new RequestFields(EmptyObject, "sampling_params.");
        unknown.AddRange(sampling.UnknownFields(KnownSamplingFields));
        if (unknown.Count > 0 && logger.IsEnabled(LogLevel.Debug))
        {
            logger.LogDebug("/generate: ignoring unknown fields {Fields}", string.Join(", ", unknown));
        }
        var (prompt, promptField) = Prompt(fields);
        var names = Names.With([new("prompt", promptField), new("request", promptField), new("prompt_token_ids", promptField)]);
        var topK = sampling.Int32("top_k", -1, 1 << 20) ?? -1;
        var seed = sampling.Int64("sampling_seed", long.MinValue, long.MaxValue) ?? sampling.Int64("seed", long.MinValue, long.MaxValue);
        var maxModelLen = host.EngineOptions.MaxModelLen;
        var maxNewTokens = sampling.Int32("max_new_tokens", 1, int.MaxValue);
        if (maxNewTokens is { } explicitBudget && prompt.Count < maxModelLen)
        {
            OpenAiRequestParser.CheckFitsModelLength(prompt.Count, explicitBudget, maxModelLen, "sampling_params.max_new_tokens", "max_new_tokens");
        }
        var noStopTrim = sampling.Bool("no_stop_trim") ?? false;
        var parameters = OpenAiRequestParser.Validated(new SamplingParams
        {
            MaxTokens = maxNewTokens ?? Math.Max(1, Math.Min(DefaultMaxNewTokens, maxModelLen - prompt.Count)),
            Temperature = (float)(sampling.Number("temperature", 0, 100) ?? 1),
            TopP = (float)(sampling.Number("top_p", 0, 1) ?? 1),
            TopK = topK < 0 ? 0 : topK,
            Seed = seed is { } s ? unchecked((ulong)s) : null,
            Stop = sampling.StringOrStrings("stop", 16),
            StopTokenIds = sampling.Ints("stop_token_ids", 0, host.ModelConfig.VocabSize - 1, 1024),
            IgnoreEos = sampling.Bool("ignore_eos") ?? false,
            IncludeStopStringInOutput = noStopTrim,
            IncludeStopTokenText = noStopTrim,
        }, names);
        var returnLogprob = fields.Bool("return_logprob") ?? false;
        var rid = fields.String("rid", 256) ?? Guid.NewGuid().ToString("N");
        if (rid.Length == 0)
        {
            throw ApiException.BadRequest("'rid' must not be empty", "rid");
        }
        var request = new EngineRequest
        {
            RequestId = rid,
            PromptTokenIds = prompt,
            Sampling = parameters,
            N = host.AdmissibleChoices(sampling.Int32("n", 1, 128) ?? 1, "sampling_params.n"),
            ReturnRouting = fields.Bool("return_routed_experts") ?? false,
            RoutingStart = fields.Int32("routed_experts_start_len", 0, int.MaxValue) ?? 0,
            Logprobs = returnLogprob ? fields.Int32("top_logprobs_num", 0, 20) ?? 0 : null,
        };
        return new Parsed(request, fields.Bool("stream") ?? false, returnLogprob, fields.Bool("return_text_in_logprobs") ?? false, names);
    }

    /// <summary>The prompt's token ids, and the field they came from.</summary>
    private (IReadOnlyList<int> Ids, string Field) Prompt(RequestFields fields)
    {
        var hasText = fields.TryGet("text", out var text);
        var hasIds = fields.TryGet("input_ids", out var ids);
        if (hasText == hasIds)
        {
            throw ApiException.BadRequest("give exactly one of 'text' (a string) or 'input_ids' (an array of token ids)", hasText ? "input_ids" : "text");
        }
        if (hasText)
        {
            if (text.ValueKind == JsonValueKind.Array && text.GetArrayLength() == 1)
            {
                text = text[0];
            }
            if (text.ValueKind != JsonValueKind.String)
            {
                throw ApiException.BadRequest("'text' must be one string; batched prompts are not supported", "text");
            }
            return (host.Tokenizer.Encode(RequestFields.Text(text, "text")), "text");
        }
        if (ids.ValueKind == JsonValueKind.Array && ids.GetArrayLength() == 1 && ids[0].ValueKind == JsonValueKind.Array)
        {
            ids = ids[0];
        }
        return (RequestFields.IntArray(ids, "input_ids", 0, host.ModelConfig.VocabSize - 1, OpenAiRequestParser.MaxListItems), "input_ids");
    }

    private Task StreamAsync(HttpContext context, EngineHost.RunningRequest running, Parsed parsed, Stopwatch clock)
    {
        var n = parsed.Request.N;
        var tokens = new List<int>[n];
        var texts = new System.Text.StringBuilder[n];
        var logprobs = new List<TokenLogprob>?[n];
        for (var i = 0; i < n; i++)
        {
            tokens[i] = [];
            texts[i] = new System.Text.StringBuilder();
            logprobs[i] = parsed.ReturnLogprob ? [] : null;
        }
        return EventStreamRelay.RelayAsync(context, logger, running, _ => { }, OnDelta, OnFinish);

        void OnDelta(SseWriter sse, StreamDelta delta)
        {
            tokens[delta.Choice].AddRange(delta.TokenIds);
            texts[delta.Choice].Append(delta.Text);
            if (delta.Logprobs is { } added)
            {
                logprobs[delta.Choice]?.AddRange(added);
            }
            var partial = new ChoiceResult(delta.Choice, tokens[delta.Choice], texts[delta.Choice].ToString(), FinishReason.Abort, null, logprobs[delta.Choice]);
            var writer = sse.BeginEvent();
            WriteChoice(writer, parsed, null, partial, partial.TokenIds, partial.Text, finished: false, clock, n > 1);
            sse.EndEvent();
        }

        void OnFinish(SseWriter sse, RequestResult result)
        {
            foreach (var choice in result.Choices)
            {
                var writer = sse.BeginEvent();
                WriteChoice(writer, parsed, result, choice, choice.TokenIds, choice.Text, finished: true, clock, n > 1);
                sse.EndEvent();
            }
        }
    }

    /// <summary>One <c>{"text", "output_ids", "meta_info"}</c> object; finish reason and routing only when finished.</summary>
    private void WriteChoice(Utf8JsonWriter writer, Parsed parsed, RequestResult? result, ChoiceResult choice, IReadOnlyList<int> outputIds, string text, bool finished, Stopwatch clock, bool withIndex)
    {
        var request = parsed.Request;
        writer.WriteStartObject();
        if (withIndex)
        {
            writer.WriteNumber("index", choice.Index);
        }
        writer.WriteString("text", text);
        OpenAiResponse.WriteIds(writer, "output_ids", outputIds);
        writer.WriteStartObject("meta_info");
        writer.WriteString("id", request.ChoiceId(choice.Index));
        if (finished)
        {
            WriteFinishReason(writer, request, choice);
        }
        else
        {
            writer.WriteNull("finish_reason");
        }
        writer.WriteNumber("prompt_tokens", request.PromptTokenIds.Count);
        writer.WriteNumber("completion_tokens", outputIds.Count);
        writer.WriteNumber("cached_tokens", result?.Usage.CachedPromptTokens ?? 0);
        writer.WriteString("weight_version", host.WeightVersion);
        writer.WriteNumber("e2e_latency", clock.Elapsed.TotalSeconds);
        if (parsed.ReturnLogprob && choice.Logprobs is { } logprobs)
        {
            writer.WriteStartArray("output_token_logprobs");
            foreach (var item in logprobs)
            {
                WriteLogprobTuple(writer, parsed, item.Logprob, item.TokenId);
            }
            writer.WriteEndArray();
            if (request.Logprobs > 0)
            {
                writer.WriteStartArray("output_top_logprobs");
                foreach (var item in logprobs)
                {
                    writer.WriteStartArray();
                    foreach (var (token, logprob) in item.TopAlternatives)
                    {
                        WriteLogprobTuple(writer, parsed, logprob, token);
                    }
                    writer.WriteEndArray();
                }
                writer.WriteEndArray();
            }
        }
        if (finished && request.ReturnRouting && choice.Routing is { } routing)
        {
            writer.WriteNumber("routed_experts_start_len", routing.Start);
            host.Metrics.AddRoutingBytes(RoutingWire.WriteSglang(writer, "routed_experts", routing, host.ModelConfig.NumHiddenLayers));
        }
        writer.WriteEndObject();
        writer.WriteEndObject();
    }

    private void WriteLogprobTuple(Utf8JsonWriter writer, Parsed parsed, float logprob, int token)
    {
        writer.WriteStartArray();
        writer.WriteNumberValue(logprob);
        writer.WriteNumberValue(token);
        if (parsed.TextInLogprobs)
        {
            writer.WriteStringValue(host.Tokenizer.Decode([token]));
        }
        else
        {
            writer.WriteNullValue();
        }
        writer.WriteEndArray();
    }

    /// <summary>SGLang's finish reason object: stop (with the matched token id or string), length, or abort.</summary>
    private void WriteFinishReason(Utf8JsonWriter writer, EngineRequest request, ChoiceResult choice)
    {
        writer.WriteStartObject("finish_reason");
        switch (choice.FinishReason)
        {
            case FinishReason.Stop:
                writer.WriteString("type", "stop");
                var last = choice.TokenIds.Count > 0 ? choice.TokenIds[^1] : -1;
                if (host.EosTokenIds.Contains(last) || request.Sampling.StopTokenIds?.Contains(last) == true)
                {
                    writer.WriteNumber("matched", last);
                }
                else if (choice.MatchedStop is { } matched)
                {
                    writer.WriteString("matched", matched);
                }
                break;
            case FinishReason.Length:
                writer.WriteString("type", "length");
                writer.WriteNumber("length", choice.TokenIds.Count);
                break;
            default:
                writer.WriteString("type", "abort");
                writer.WriteString("message", "the request was aborted");
                break;
        }
        writer.WriteEndObject();
    }
}
