using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using RouteReplay.Server.Http;

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
        using var running = await host.StartAsync(host.WithRemotePrefill(request.Engine, context.Request), request.Names, context.RequestAborted).ConfigureAwait(false);
        var response = new OpenAiResponse(host, request, id, DateTimeOffset.UtcNow.ToUnixTimeSeconds());
        if (request.Stream)
        {
            await StreamAsync(context, running, response).ConfigureAwait(false);
            return;
        }
        var result = await EventStreamRelay.ResultAsync(context, running).ConfigureAwait(false);
        var outcome = EventStreamRelay.CheckResult(running, logger, result);
        context.Response.ContentType = "application/json";
        using (var writer = new Utf8JsonWriter(context.Response.BodyWriter, JsonOutput.Options))
        {
            response.WriteFull(writer, result);
        }
        running.CountOutcome(outcome);
        await context.Response.BodyWriter.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }

    private Task StreamAsync(HttpContext context, EngineHost.RunningRequest running, OpenAiResponse response) =>
        EventStreamRelay.RelayAsync(context, logger, running, response.WriteStart, response.WriteDelta, response.WriteFinish);
}
