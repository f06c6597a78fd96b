using System.Text.Json;
using Microsoft.AspNetCore.Http;
using RouteReplay.Backends;
using RouteReplay.Engine;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.Control;

/// <summary>
/// Sharing the GPU with a trainer, under SGLang's names (<c>/release_memory_occupation</c>,
/// <c>/resume_memory_occupation</c>, body field <c>tags</c>) and vLLM's (<c>/sleep?level=1|2</c>,
/// <c>/wake_up?tags=...</c>, <c>/is_sleeping</c>). SGLang's release keeps the weights in host memory (vLLM's level 1);
/// level 2 drops them, and only a weight update brings them back.
/// </summary>
public sealed class MemoryEndpoints(EngineHost host)
{
    public async Task ReleaseMemoryOccupationAsync(HttpContext context)
    {
        var regions = MemoryRegions.All;
        var abortAll = false;
        using (var body = await RequestBody.ReadOptionalObjectAsync(context, host.Options.MaxRequestBodyBytes).ConfigureAwait(false))
        {
            if (body is not null)
            {
                var fields = new RequestFields(body.RootElement);
                regions = MemoryTags.FromBody(fields);
                abortAll = fields.Bool("abort_all_requests") ?? false;
            }
        }
        var aborted = await ReleaseAsync(regions, keepWeightsInHost: true, abortAll, context).ConfigureAwait(false);
        await ControlEndpoints.WriteAsync(context, writer =>
        {
            writer.WriteBoolean("success", true);
            writer.WriteString("message", $"Released {Describe(regions)}.");
            writer.WriteNumber("num_aborted_requests", aborted);
            WriteState(writer, host.Memory.State);
        }).ConfigureAwait(false);
    }

    public async Task ResumeMemoryOccupationAsync(HttpContext context)
    {
        var regions = MemoryRegions.All;
        using (var body = await RequestBody.ReadOptionalObjectAsync(context, host.Options.MaxRequestBodyBytes).ConfigureAwait(false))
        {
            if (body is not null)
            {
                regions = MemoryTags.FromBody(new RequestFields(body.RootElement));
            }
        }
        var state = await ResumeAsync(regions, context).ConfigureAwait(false);
        await ControlEndpoints.WriteAsync(context, writer =>
        {
            writer.WriteBoolean("success", true);
            writer.WriteString("message", $"Resumed {Describe(regions)}.");
            WriteState(writer, state);
        }).ConfigureAwait(false);
    }

    /// <summary>vLLM's <c>POST /sleep?level=1|2&amp;mode=abort|wait</c>: as vLLM, requests in flight are aborted unless <c>mode=wait</c>.</summary>
    public async Task SleepAsync(HttpContext context)
    {
        var query = context.Request.Query;
        var level = query["level"].ToString() switch
        {
            "" or "1" => 1,
            "2" => 2,
            var other => throw ApiException.BadRequest($"'level' must be 1 (weights kept in host memory) or 2 (weights dropped), not '{other}'", "level"),
        };
        var abortAll = query["mode"].ToString() switch
        {
            "" or "abort" => true,
            "wait" => false,
            var other => throw ApiException.BadRequest($"'mode' must be 'abort' (abort the requests in flight) or 'wait' (let them finish), not '{other}'", "mode"),
        };
        var aborted = await ReleaseAsync(MemoryRegions.All, keepWeightsInHost: level == 1, abortAll, context).ConfigureAwait(false);
        await ControlEndpoints.WriteAsync(context, writer =>
        {
            writer.WriteString("status", "sleeping");
            writer.WriteNumber("level", level);
            writer.WriteNumber("num_aborted_requests", aborted);
        }).ConfigureAwait(false);
    }

    /// <summary>vLLM's <c>POST /wake_up</c>, optionally <c>?tags=weights&amp;tags=kv_cache</c> (all when none).</summary>
    public async Task WakeUpAsync(HttpContext context)
    {
        var given = context.Request.Query["tags"];
        var tags = given.Count == 0 ? null : given.Select(tag => tag ?? "").ToArray();
        var state = await ResumeAsync(MemoryTags.Parse(tags, "tags"), context).ConfigureAwait(false);
        await ControlEndpoints.WriteAsync(context, writer =>
        {
            writer.WriteString("status", state.IsReleased ? "sleeping" : "awake");
            if (tags is null)
            {
                writer.WriteNull("tags_woken");
            }
            else
            {
                writer.WriteStartArray("tags_woken");
                foreach (var tag in tags)
                {
                    writer.WriteStringValue(tag);
                }
                writer.WriteEndArray();
            }
        }).ConfigureAwait(false);
    }

    /// <summary>vLLM's <c>GET /is_sleeping</c>: <c>is_sleeping</c> while any region is released, and what is.</summary>
    public Task IsSleepingAsync(HttpContext context) => ControlEndpoints.WriteAsync(context, writer => WriteState(writer, host.Memory.State));

    private async Task<int> ReleaseAsync(MemoryRegions regions, bool keepWeightsInHost, bool abortAll, HttpContext context)
    {
        try
        {
            return await host.Memory.ReleaseAsync(regions, keepWeightsInHost, abortAll, context.RequestAborted).ConfigureAwait(false);
        }
        catch (NotSupportedException e)
        {
            throw new ApiException(400, e.Message, null, "not_supported");
        }
    }

    private async Task<MemoryState> ResumeAsync(MemoryRegions regions, HttpContext context)
    {
        try
        {
            return await host.Memory.ResumeAsync(regions, context.RequestAborted).ConfigureAwait(false);
        }
        catch (WeightsDiscardedException e)
        {
            throw new ApiException(409, e.Message, "tags", "weights_discarded");
        }
        catch (NotSupportedException e)
        {
            throw new ApiException(400, e.Message, null, "not_supported");
        }
    }

    private static void WriteState(Utf8JsonWriter writer, MemoryState state)
    {
        writer.WriteBoolean("is_sleeping", state.IsReleased);
        writer.WriteStartArray("released");
        foreach (var tag in MemoryTags.Names(state.Released))
        {
            writer.WriteStringValue(tag);
        }
        writer.WriteEndArray();
        writer.WriteString("weights", state.Weights switch
        {
            WeightsResidence.Resident => "resident",
            WeightsResidence.HostCopy => "host_copy",
            _ => "discarded",
        });
    }

    private static string Describe(MemoryRegions regions) => regions == MemoryRegions.None ? "nothing" : string.Join(" and ", MemoryTags.Names(regions));
}
