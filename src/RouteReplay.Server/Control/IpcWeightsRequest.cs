using System.Text.Json;
using RouteReplay.Backends;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.Control;

/// <summary>
/// The body of <c>/update_weights_from_ipc</c>: <c>tensors</c> (each <c>name</c>, <c>dtype</c> bfloat16, <c>shape</c>,
/// <c>ipc_handle</c> the base64 of a 64-byte <c>cudaIpcMemHandle_t</c>, <c>offset_bytes</c> into its allocation,
/// <c>device</c> the sender's GPU index, informational), <c>weight_version</c> and <c>abort_all_requests</c>.
/// Errors name the field as the client wrote it (<c>tensors[3].ipc_handle</c>).
/// </summary>
public sealed record IpcWeightsRequest(IReadOnlyList<IpcTensor> Tensors, string? WeightVersion, bool AbortAll)
{
    private const int MaxNameLength = 1024;
    private const int MaxDimensions = 8;

    public static IpcWeightsRequest Parse(JsonElement body)
    {
        var fields = new RequestFields(body);
        var weightVersion = fields.String("weight_version", 256);
        if (weightVersion is { Length: 0 })
        {
            throw ApiException.BadRequest("'weight_version' must not be empty", "weight_version");
        }
        if (!fields.TryGet("tensors", out var list))
        {
            throw ApiException.BadRequest("'tensors' is required: the shared tensors, each with name, dtype, shape, ipc_handle and offset_bytes", "tensors");
        }
        if (list.ValueKind != JsonValueKind.Array || list.GetArrayLength() == 0)
        {
            throw ApiException.BadRequest($"'tensors' must be a non-empty array of tensors, got {RequestFields.Show(list)}", "tensors");
        }
        var tensors = new List<IpcTensor>(list.GetArrayLength());
        foreach (var item in list.EnumerateArray())
        {
            tensors.Add(Tensor(item, $"tensors[{tensors.Count}]"));
        }
        return new IpcWeightsRequest(tensors, weightVersion, fields.Bool("abort_all_requests") ?? false);
    }

    private static IpcTensor Tensor(JsonElement item, string name)
    {
        if (item.ValueKind != JsonValueKind.Object)
        {
            throw ApiException.BadRequest($"'{name}' must be an object, got {RequestFields.Show(item)}", name);
        }
        var fields = new RequestFields(item, name + ".");
        var tensorName = fields.String("name", MaxNameLength) ?? throw Missing(name, "name");
        var dtype = fields.String("dtype", 64) ?? throw Missing(name, "dtype");
        if (dtype != "bfloat16")
        {
            throw ApiException.BadRequest(
                $"'{name}.dtype' is '{dtype}': only bfloat16 tensors are accepted (convert with .to(torch.bfloat16).contiguous())", $"{name}.dtype");
        }
        var shape = fields.Ints("shape", 0, int.MaxValue, MaxDimensions) ?? throw Missing(name, "shape");
        var handle = Handle(fields.String("ipc_handle", 256) ?? throw Missing(name, "ipc_handle"), $"{name}.ipc_handle");
        var offset = fields.Int64("offset_bytes", 0, long.MaxValue) ?? throw Missing(name, "offset_bytes");
        fields.Int32("device", 0, 1024);
        return new IpcTensor(tensorName, [.. shape.Select(dimension => (long)dimension)], handle, offset);
    }

    private static byte[] Handle(string text, string field)
    {
        byte[] handle;
        try
        {
            handle = Convert.FromBase64String(text);
        }
        catch (FormatException)
        {
            throw ApiException.BadRequest($"'{field}' is not base64", field);
        }
        if (handle.Length != IpcTensor.HandleBytes)
        {
            throw ApiException.BadRequest($"'{field}' must be the base64 of the {IpcTensor.HandleBytes} bytes of a cudaIpcMemHandle_t, got {handle.Length} bytes", field);
        }
        return handle;
    }

    private static ApiException Missing(string tensor, string field) =>
        ApiException.BadRequest($"'{tensor}.{field}' is required", $"{tensor}.{field}");
}
