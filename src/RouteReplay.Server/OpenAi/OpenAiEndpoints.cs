using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using RouteReplay.Engine;
using RouteReplay.Routing;
using RouteReplay.Server.Http;
using RouteReplay.Server.Metrics;

namespace RouteReplay.Server.OpenAi;

/// <summary><c>GET /v1/models</c>, <c>POST /v1/completions</c> and <c>POST /v1/chat/completions</c>, streaming or not.</summary>
public sealed class OpenAiEndpoints(EngineHost host, ILogger logger)
{
    public async Task ModelsAsync(HttpContext context)
    {
        context.Response.ContentType = "application/json";
        using (var writer = new Utf8JsonWriter(context.Response.BodyWriter, JsonOutput.Options))
        {
            writer.WriteStartObject();
            writer.WriteString("object", "list");
            writer.WriteStartArray("data");
            writer.WriteStartObject();
            writer.WriteString("id", host.ModelName);
            writer.WriteString("object", "model");
            writer.WriteNumber("created", host.StartedAt.ToUnixTimeSeconds());
            writer.WriteString("owned_by", "routereplay");
            writer.WriteString("root", host.ModelPath);
            writer.WriteNumber("max_model_len", host.EngineOptions.MaxModelLen);
            writer.WriteEndObject();
            writer.WriteEndArray();
            writer.WriteEndObject();
        }
        await context.Response.BodyWriter.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }

    public Task CompletionsAsync(HttpContext context) => HandleAsync(context, chat: false);

    public Task ChatCompletionsAsync(HttpContext context) => HandleAsync(context, chat: true);

    private async Task HandleAsync(HttpContext context, bool chat)
    {
        OpenAiRequest request;
        var id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
        using (var body = await RequestBody.ReadObjectAsync(context, host.Options.MaxRequestBodyBytes).ConfigureAwait(false))
        {
            request = OpenAiRequestParser.Parse(body.RootElement, chat, host, id);
        }
        if (request.IgnoredFields.Count > 0 && logger.IsEnabled(LogLevel.Debug))
        {
            logger.LogDebug("{Path}: ignoring unknown fields {Fields}", context.Request.Path, string.Join(", ", request.IgnoredFields));
        }
        using var running = await host.StartAsync(request.Engine, context.RequestAborted).ConfigureAwait(false);
        var response = new OpenAiResponse(host, request, id, DateTimeOffset.UtcNow.ToUnixTimeSeconds());
        if (request.Stream)
        {
            await StreamAsync(context, running, response).ConfigureAwait(false);
            return;
        }
        RequestResult? result = null;
        await foreach (var item in running.Stream.ReadAllAsync(context.RequestAborted).ConfigureAwait(false))
        {
            if (item is RequestFinished finished)
            {
                result = finished.Result;
            }
        }
        var outcome = CheckResult(result!);
        context.Response.ContentType = "application/json";
        using (var writer = new Utf8JsonWriter(context.Response.BodyWriter, JsonOutput.Options))
        {
            response.WriteFull(writer, result!);
        }
        host.Metrics.Count(outcome);
        await context.Response.BodyWriter.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>Throws a 500 when the request failed (a routing integrity failure among others); never returns its routing.</summary>
    public RequestOutcome CheckResult(RequestResult result)
    {
        if (result.Error is { } error)
        {
            host.Metrics.Count(RequestOutcome.Error);
            logger.LogError(error, "request {Id} failed", result.RequestId);
            throw new ApiException(500, $"the request failed: {error.Message}", null, error is RoutingIntegrityException ? "routing_integrity_failure" : "engine_error");
        }
        return result.Choices.Any(c => c.FinishReason == FinishReason.Abort) ? RequestOutcome.Aborted : RequestOutcome.Ok;
    }

    private Task StreamAsync(HttpContext context, EngineHost.RunningRequest running, OpenAiResponse response) =>
        EventStreamRelay.RelayAsync(context, host, logger, running, response.WriteStart, response.WriteDelta, response.WriteFinish);
}
