using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.Router;

/// <summary>
/// The control endpoints (<c>/update_weights_from_disk</c>, <c>/flush_cache</c>, <c>/abort_request</c>, and the memory
/// endpoints <c>/release_memory_occupation</c>, <c>/resume_memory_occupation</c>, <c>/sleep</c>, <c>/wake_up</c>,
/// <c>/is_sleeping</c>), sent to every prefill and decode server (every worker) at once, query string and body as
/// given; a worker whose cache was flushed, released or whose weights were replaced has the prompts the router
/// remembers sending it forgotten. The answer is the servers' answers merged (numbers such as
/// <c>num_aborted_requests</c> and <c>store_values_deleted</c> added up: each server counts only what it did itself, so
/// servers sharing a store count each deleted value once between them; a boolean such as <c>is_sleeping</c> true only
/// when it is true on every server) with each server's status under <c>servers</c>. When a server fails, the answer says so without the servers' addresses (they are in the router's
/// log): a request the servers refused (4xx) gets their error, naming the field; any other failure a 502 naming each
/// failing server as <c>decode server 2</c> (<c>worker 2</c>).
/// </summary>
internal sealed class RouterFanOut(RouterServer router, HttpClient http, ILogger logger)
{
    private sealed record Answer(Upstream Server, int Status, JsonElement? Body, UpstreamError? Error);

    /// <summary>The memory endpoints a trainer sharing the GPUs calls on the router, as on one server.</summary>
    public static readonly string[] MemoryPaths = ["/release_memory_occupation", "/resume_memory_occupation", "/sleep", "/wake_up", "/is_sleeping"];

    /// <summary>Endpoints that leave every worker's prefix cache as it was.</summary>
    private static readonly HashSet<string> KeepPrefixes = ["/abort_request", "/is_sleeping", "/resume_memory_occupation", "/wake_up"];

    public async Task HandleAsync(HttpContext context)
    {
        var body = await RouterProxy.ReadBodyAsync(context, router.Options.MaxRequestBodyBytes).ConfigureAwait(false);
        var servers = router.Servers;
        var updating = context.Request.Path == "/update_weights_from_disk" ? router.Probes.UpdatingWeights() : null;
        Answer[] answers;
        using (updating)
        {
            answers = await Task.WhenAll(servers.Select(s => SendAsync(context, s, body))).ConfigureAwait(false);
            if (updating is not null)
            {
                LearnWeightVersions(answers);
            }
        }
        if (!KeepPrefixes.Contains(context.Request.Path.Value ?? ""))
        {
            router.Workers?.ForgetPrefixes(answers.Where(a => a.Status is >= 200 and <= 299).Select(a => a.Server));
        }
        var failed = answers.Where(a => a.Status is < 200 or > 299).ToArray();
        if (failed.Length > 0)
        {
            throw Failure(context, failed, answers.Length);
        }
        context.Response.ContentType = "application/json";
        using (var writer = new Utf8JsonWriter(context.Response.BodyWriter, JsonOutput.Options))
        {
            WriteMerged(writer, answers);
        }
        await context.Response.BodyWriter.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }

    private ApiException Failure(HttpContext context, Answer[] failed, int total)
    {
        var path = context.Request.Path;
        var detail = string.Join("; ", failed.Select(f => $"{f.Server.Kind} {f.Server.Name}: {(f.Status == 0 ? "" : $"{f.Status} ")}{f.Error!.Message}"));
        logger.LogWarning("{Path} failed on {Failed} of {Total} servers: {Detail}", path, failed.Length, total, detail);
        RelayNotes.Of(context).Error = detail;
        if (failed.All(f => f.Status is >= 400 and < 500))
        {
            var first = failed[0];
            var where = failed.Length == total ? "" : $" (on {failed.Length} of {total} servers: {string.Join(", ", failed.Select(f => f.Server.Label))}; the others succeeded)";
            return new ApiException(first.Status, first.Error!.Message + where, first.Error.Param, first.Error.Code);
        }
        var servers = string.Join("; ", failed.Select(f => $"{f.Server.Label}: {(f.Status == 0 ? "unreachable" : $"answered {f.Status}")}"));
        return new ApiException(failed.Select(f => f.Status).FirstOrDefault(s => s >= 500) is var status and > 0 ? status : 502, $"{path} failed on {failed.Length} of {total} servers ({servers}); the router's log has the details", null, "fanout_failed");
    }

    private static void LearnWeightVersions(Answer[] answers)
    {
        foreach (var answer in answers)
        {
            if (answer.Body is { ValueKind: JsonValueKind.Object } body && body.TryGetProperty("weight_version", out var version) && version.ValueKind == JsonValueKind.String)
            {
                answer.Server.WeightVersion = version.GetString();
            }
        }
    }

    private async Task<Answer> SendAsync(HttpContext context, Upstream server, byte[] body)
    {
        try
        {
            using var request = RouterProxy.BuildRequest(context, server, body, []);
            using var response = await http.SendAsync(request, context.RequestAborted).ConfigureAwait(false);
            var text = await response.Content.ReadAsStringAsync(context.RequestAborted).ConfigureAwait(false);
            var status = (int)response.StatusCode;
            if (status is < 200 or > 299)
            {
                return new Answer(server, status, null, UpstreamErrors.Parse(text));
            }
            using var document = JsonDocument.Parse(text);
            return new Answer(server, status, document.RootElement.Clone(), null);
        }
        catch (HttpRequestException e)
        {
            server.CountFailure(e.Message);
            return new Answer(server, 0, null, new UpstreamError($"unreachable: {e.Message}", null, null));
        }
        catch (JsonException e)
        {
            return new Answer(server, 502, null, new UpstreamError($"answered with something other than JSON: {e.Message}", null, null));
        }
    }

    /// <summary>Numbers each server counts for itself (added up); other numbers, such as a sleep level, are the same on every server.</summary>
    private static bool IsCount(string name) => name.StartsWith("num_", StringComparison.Ordinal) || name.EndsWith("_deleted", StringComparison.Ordinal);

    private static void WriteMerged(Utf8JsonWriter writer, Answer[] answers)
    {
        var bodies = answers.Select(a => a.Body!.Value).Where(b => b.ValueKind == JsonValueKind.Object).ToArray();
        writer.WriteStartObject();
        if (bodies.Length > 0)
        {
            foreach (var property in bodies[0].EnumerateObject())
            {
                if (IsCount(property.Name) && property.Value.ValueKind == JsonValueKind.Number && bodies.All(b => b.TryGetProperty(property.Name, out var v) && v.ValueKind == JsonValueKind.Number))
                {
                    writer.WriteNumber(property.Name, bodies.Sum(b => b.GetProperty(property.Name).GetInt64()));
                }
                else if (property.Value.ValueKind is JsonValueKind.True or JsonValueKind.False && bodies.All(b => b.TryGetProperty(property.Name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False))
                {
                    writer.WriteBoolean(property.Name, bodies.All(b => b.GetProperty(property.Name).GetBoolean()));
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
            writer.WriteString("role", answer.Server.Flag);
            writer.WriteNumber("status", answer.Status);
            writer.WriteEndObject();
        }
        writer.WriteEndArray();
        writer.WriteEndObject();
    }
}
