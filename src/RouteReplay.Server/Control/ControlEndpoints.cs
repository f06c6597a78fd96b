using System.Text.Json;
using Microsoft.AspNetCore.Http;
using RouteReplay.Server.Disaggregation;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.Control;

/// <summary>
/// SGLang's RL control endpoints: <c>/update_weights_from_disk</c>, <c>/update_weights_from_ipc</c>, <c>/flush_cache</c>, <c>/abort_request</c>,
/// <c>/get_model_info</c>; and <c>/health</c>.
/// </summary>
public sealed class ControlEndpoints(EngineHost host)
{
    public async Task UpdateWeightsFromDiskAsync(HttpContext context)
    {
        string modelPath;
        string? weightVersion;
        bool abortAll;
        using (var body = await RequestBody.ReadObjectAsync(context, host.Options.MaxRequestBodyBytes).ConfigureAwait(false))
        {
            var fields = new RequestFields(body.RootElement);
            modelPath = fields.String("model_path", 4096) ?? throw ApiException.BadRequest("'model_path' is required", "model_path");
            weightVersion = fields.String("weight_version", 256);
            abortAll = fields.Bool("abort_all_requests") ?? false;
        }
        if (weightVersion is { Length: 0 })
        {
            throw ApiException.BadRequest("'weight_version' must not be empty", "weight_version");
        }
        var aborted = await host.UpdateWeightsAsync(modelPath, weightVersion, abortAll, context.RequestAborted).ConfigureAwait(false);
        await WriteAsync(context, writer =>
        {
            writer.WriteBoolean("success", true);
            writer.WriteString("message", "Succeeded to update model weights.");
            writer.WriteNumber("num_paused_requests", 0);
            writer.WriteNumber("num_aborted_requests", aborted);
            writer.WriteString("weight_version", host.WeightVersion);
        }).ConfigureAwait(false);
    }

    /// <summary>Copies tensors a trainer on this machine shares through CUDA IPC into the weights (<see cref="IpcWeightsRequest"/>).</summary>
    public async Task UpdateWeightsFromIpcAsync(HttpContext context)
    {
        IpcWeightsRequest request;
        using (var body = await RequestBody.ReadObjectAsync(context, host.Options.MaxRequestBodyBytes).ConfigureAwait(false))
        {
            request = IpcWeightsRequest.Parse(body.RootElement);
        }
        var aborted = await host.UpdateWeightsFromIpcAsync(request.Tensors, request.WeightVersion, request.AbortAll, context.RequestAborted).ConfigureAwait(false);
        await WriteAsync(context, writer =>
        {
            writer.WriteBoolean("success", true);
            writer.WriteString("message", "Succeeded to update model weights.");
            writer.WriteNumber("num_tensors", request.Tensors.Count);
            writer.WriteNumber("num_paused_requests", 0);
            writer.WriteNumber("num_aborted_requests", aborted);
            writer.WriteString("weight_version", host.WeightVersion);
        }).ConfigureAwait(false);
    }

    /// <summary>Drops every prefix-cache key; the block store keeps its values (they are fingerprinted) unless <c>?include_store=true</c>.</summary>
    public async Task FlushCacheAsync(HttpContext context)
    {
        var includeStore = context.Request.Query["include_store"].ToString() switch
        {
            "" or "false" or "0" => false,
            "true" or "1" => true,
            var other => throw ApiException.BadRequest($"'include_store' must be true or false, not '{other}'", "include_store"),
        };
        var store = await host.Engine.InvokeAsync(e =>
        {
            e.FlushCache();
            return e.StoreTier;
        }).ConfigureAwait(false);
        long deleted = 0;
        if (includeStore && store is not null)
        {
            deleted = await store.ClearStoreAsync(context.RequestAborted).ConfigureAwait(false);
        }
        await WriteAsync(context, writer =>
        {
            writer.WriteBoolean("success", true);
            writer.WriteString("message", includeStore ? "Cache and block store flushed." : "Cache flushed.");
            if (includeStore)
            {
                writer.WriteNumber("store_values_deleted", deleted);
            }
        }).ConfigureAwait(false);
    }

    public async Task AbortRequestAsync(HttpContext context)
    {
        string? rid;
        bool abortAll;
        using (var body = await RequestBody.ReadObjectAsync(context, host.Options.MaxRequestBodyBytes).ConfigureAwait(false))
        {
            var fields = new RequestFields(body.RootElement);
            rid = fields.String("rid", 256);
            abortAll = fields.Bool("abort_all") ?? false;
        }
        if (rid is null && !abortAll)
        {
            throw ApiException.BadRequest("give 'rid' (the request to abort) or 'abort_all': true", "rid");
        }
        var aborted = await host.Engine.InvokeAsync(e => abortAll ? e.AbortAll() : (host.Relayed.Abort(e, rid!) ? 1 : 0)).ConfigureAwait(false);
        await WriteAsync(context, writer =>
        {
            writer.WriteBoolean("success", true);
            writer.WriteNumber("num_aborted_requests", aborted);
        }).ConfigureAwait(false);
    }

    public Task GetModelInfoAsync(HttpContext context) => WriteAsync(context, writer =>
    {
        writer.WriteString("model_path", host.ModelPath);
        writer.WriteString("tokenizer_path", host.Options.ModelPath);
        writer.WriteBoolean("is_generation", true);
        writer.WriteString("served_model_name", host.ModelName);
        writer.WriteString("weight_version", host.WeightVersion);
        writer.WriteString("architecture", host.ModelConfig.Architecture);
        writer.WriteNumber("num_hidden_layers", host.ModelConfig.NumHiddenLayers);
        writer.WriteNumber("num_experts", host.ModelConfig.NumExperts);
        writer.WriteNumber("num_experts_per_tok", host.ModelConfig.NumExpertsPerTok);
        writer.WriteStartArray("moe_layers");
        foreach (var layer in host.RoutingFormat.MoeLayers)
        {
            writer.WriteNumberValue(layer);
        }
        writer.WriteEndArray();
        writer.WriteString("routing_dtype", host.RoutingFormat.NumpyName);
        writer.WriteNumber("max_model_len", host.EngineOptions.MaxModelLen);
        writer.WriteString("disaggregation_role", host.Role.ToString().ToLowerInvariant());
        if (host.TransferPort is { } port)
        {
            writer.WriteNumber("transfer_port", port);
        }
        FleetInfo.Write(writer, host);
    });

    public async Task HealthAsync(HttpContext context)
    {
        if (host.Engine.Fault is { } fault)
        {
            await ErrorResponses.WriteAsync(context, 503, $"the engine has failed: {fault.Message}", null, "engine_failed").ConfigureAwait(false);
            return;
        }
        context.Response.StatusCode = 200;
        context.Response.ContentType = "text/plain";
        await context.Response.WriteAsync("OK\n", context.RequestAborted).ConfigureAwait(false);
    }

    internal static async Task WriteAsync(HttpContext context, Action<Utf8JsonWriter> fields)
    {
        context.Response.ContentType = "application/json";
        using (var writer = new Utf8JsonWriter(context.Response.BodyWriter, JsonOutput.Options))
        {
            writer.WriteStartObject();
            fields(writer);
            writer.WriteEndObject();
        }
        await context.Response.BodyWriter.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }
}
