using System.Text.Json;
using System.Text.Json.Nodes;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>
/// <c>/update_weights_from_ipc</c> on the CPU backend: every malformed field is a 400 naming it as the client wrote it,
/// names and shapes are checked against the served model, a well-formed request is a 400 saying it needs
/// <c>--device cuda</c>, and the server keeps serving with its weights unchanged.
/// </summary>
public sealed class IpcWeightsEndpointTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>, IAsyncLifetime
{
    private static readonly string Handle = Convert.ToBase64String(new byte[64]);
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(model.Directory);

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    private JsonObject Body()
    {
        var tensors = new JsonArray();
        foreach (var weight in WeightLayout.Enumerate(model.Config).Take(5))
        {
            tensors.Add(new JsonObject
            {
                ["name"] = weight.Name,
                ["dtype"] = "bfloat16",
                ["shape"] = new JsonArray([.. weight.Shape.Select(d => JsonValue.Create(d))]),
                ["ipc_handle"] = Handle,
                ["offset_bytes"] = 512 * tensors.Count,
                ["device"] = 0,
            });
        }
        return new JsonObject { ["tensors"] = tensors, ["weight_version"] = "step-1" };
    }

    private async Task<(string? Param, string Message)> RefusedAsync(string json)
    {
        var (status, body) = await _server.PostAsync("/update_weights_from_ipc", json);
        Assert.Equal(400, status);
        var error = body.GetProperty("error");
        var param = error.TryGetProperty("param", out var p) && p.ValueKind == JsonValueKind.String ? p.GetString() : null;
        return (param, error.GetProperty("message").GetString()!);
    }

    private async Task AssertStillServingWithTheSameWeightsAsync(string versionBefore)
    {
        Assert.Equal(200, (await _server.PostAsync("/generate", """{"text": "still serving", "sampling_params": {"max_new_tokens": 1}}""")).Status);
        var info = await _server.GetAsync("/get_model_info");
        Assert.Equal(versionBefore, info.Body.GetProperty("weight_version").GetString());
    }

    [Fact]
    public async Task A_well_formed_request_on_the_cpu_is_a_400_saying_it_needs_device_cuda_and_the_server_keeps_serving()
    {
        var versionBefore = (await _server.GetAsync("/get_model_info")).Body.GetProperty("weight_version").GetString()!;

        var (_, message) = await RefusedAsync(Body().ToJsonString());

        Assert.Contains("update_weights_from_ipc needs --device cuda", message);
        await AssertStillServingWithTheSameWeightsAsync(versionBefore);
    }

    [Theory]
    [InlineData("ipc_handle", "\"not base64!\"", "tensors[3].ipc_handle", "base64")]
    [InlineData("ipc_handle", "\"AAAA\"", "tensors[3].ipc_handle", "got 3 bytes")]
    [InlineData("ipc_handle", "null", "tensors[3].ipc_handle", "required")]
    [InlineData("dtype", "\"float32\"", "tensors[3].dtype", "'float32'")]
    [InlineData("shape", "\"4x4\"", "tensors[3].shape", "array of integers")]
    [InlineData("offset_bytes", "-1", "tensors[3].offset_bytes", "integer")]
    [InlineData("name", "\"model.layers.0.mlp.no_such.weight\"", "tensors[3].name", "'model.layers.0.mlp.no_such.weight'")]
    [InlineData("shape", "[1, 2]", "tensors[3].shape", "[1, 2]")]
    public async Task A_bad_field_of_one_tensor_is_a_400_naming_it_as_the_client_wrote_it(string field, string value, string param, string said)
    {
        var body = Body();
        body["tensors"]![3]![field] = JsonNode.Parse(value);

        var (refusedParam, message) = await RefusedAsync(body.ToJsonString());

        Assert.Equal(param, refusedParam);
        Assert.Contains(param, message);
        Assert.Contains(said, message);
    }

    [Theory]
    [InlineData("{not json", null)]
    [InlineData("""{"weight_version": "v"}""", "tensors")]
    [InlineData("""{"tensors": []}""", "tensors")]
    [InlineData("""{"tensors": [7]}""", "tensors[0]")]
    [InlineData("""{"tensors": [{"name": "model.norm.weight"}]}""", "tensors[0].dtype")]
    public async Task A_malformed_body_is_a_400_and_the_server_keeps_serving(string json, string? param)
    {
        var versionBefore = (await _server.GetAsync("/get_model_info")).Body.GetProperty("weight_version").GetString()!;

        var (refusedParam, _) = await RefusedAsync(json);

        if (param is not null)
        {
            Assert.Equal(param, refusedParam);
        }
        await AssertStillServingWithTheSameWeightsAsync(versionBefore);
    }
}
