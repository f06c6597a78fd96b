using System.Text.Json;
using Microsoft.AspNetCore.Http;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.Router;

/// <summary>
/// The control endpoints (<c>/update_weights_from_disk</c>, <c>/flush_cache</c>, <c>/abort_request</c>), sent to every
/// prefill and decode server at once. The answer is the servers' answers merged (numbers such as
/// <c>num_aborted_requests</c> added up, the rest from the first) with each server's status under <c>servers</c>;
/// when any server fails, the answer is that server's status with every failing server named.
/// </summary>
internal sealed class RouterFanOut(RouterServer router, HttpClient http)
{
    private sealed record Answer(Upstream Server, int Status, JsonElement? Body, string? Error);

    public async Task HandleAsync(HttpContext context)
    {
        var body = await RouterProxy.ReadBodyAsync(context, router.Options.MaxRequestBodyBytes).ConfigureAwait(false);
        Upstream[] servers = [.. router.Prefill, .. router.Decode];
        var answers = await Task.WhenAll(servers.Select(s => SendAsync(context, s, body))).ConfigureAwait(false);
        var failed = answers.Where(a => a.Status is < 200 or > 299).ToArray();
        if (failed.Length > 0)
        {
            throw new ApiException(
                failed[0].Status == 0 ? 502 : failed[0].Status,
                $"{context.Request.Path} failed on {failed.Length} of {answers.Length} servers: {string.Join("; ", failed.Select(f => $"{f.Server.Name} ({f.Server.RoleName}): {f.Error}"))}",
                null,
                "fanout_failed");
        }
        context.Response.ContentType = "application/json";
        using (var writer = new Utf8JsonWriter(context.Response.BodyWriter, JsonOutput.Options))
        {
            WriteMerged(writer, answers);
        }
        await context.Response.BodyWriter.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }

    private async Task<Answer> SendAsync(HttpContext context, Upstream server, byte[] body)
    {
        try
        {
            using var request = RouterProxy.BuildRequest(context, server, body, prefillHeader: null);
            using var response = await http.SendAsync(request, context.RequestAborted).ConfigureAwait(false);
            var text = await response.Content.ReadAsStringAsync(context.RequestAborted).ConfigureAwait(false);
            var status = (int)response.StatusCode;
            if (status is < 200 or > 299)
            {
                return new Answer(server, status, null, RouterProxy.ErrorMessage(text));
            }
            using var document = JsonDocument.Parse(text);
            return new Answer(server, status, document.RootElement.Clone(), null);
        }
        catch (HttpRequestException e)
        {
            server.CountFailure();
            return new Answer(server, 0, null, $"unreachable: {e.Message}");
        }
        catch (JsonException e)
        {
            return new Answer(server, 502, null, $"answered with something other than JSON: {e.Message}");
        }
    }

    private static void WriteMerged(Utf8JsonWriter writer, Answer[] answers)
    {
        var bodies = answers.Select(a => a.Body!.Value).Where(b => b.ValueKind == JsonValueKind.Object).ToArray();
        writer.WriteStartObject();
        if (bodies.Length > 0)
        {
            foreach (var property in bodies[0].EnumerateObject())
            {
                if (property.Value.ValueKind == JsonValueKind.Number && bodies.All(b => b.TryGetProperty(property.Name, out var v) && v.ValueKind == JsonValueKind.Number))
                {
                    writer.WriteNumber(property.Name, bodies.Sum(b => b.GetProperty(property.Name).GetInt64()));
                }
                else
                {
                    property.WriteTo(writer);
                }
            }
        }
        writer.WriteStartArray("servers");
        foreach (var answer in answers)
        {
            writer.WriteStartObject();
            writer.WriteString("url", answer.Server.Name);
            writer.WriteString("role", answer.Server.RoleName);
            writer.WriteNumber("status", answer.Status);
            writer.WriteEndObject();
        }
        writer.WriteEndArray();
        writer.WriteEndObject();
    }
}
