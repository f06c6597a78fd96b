using System.Buffers.Binary;
using System.Text.Json;
using RouteReplay.Engine;
using RouteReplay.Routing;

namespace RouteReplay.Tests.Server;

/// <summary>The same request run in process, one at a time, and decoders for both HTTP routing forms.</summary>
public static class Reference
{
    public static RequestResult Run(string modelDir, EngineRequest request)
    {
        using var engine = LoadedModel.LoadCpu(modelDir, new EngineOptions { NumBlocks = 256, EnablePrefixCaching = false, WeightsVersion = "reference" });
        var sink = new Sink();
        engine.AddRequest(request, sink);
        engine.RunToCompletion();
        Assert.Null(sink.Result!.Error);
        return sink.Result;
    }

    public static EngineRequest Greedy(IReadOnlyList<int> prompt, int maxTokens, int n = 1, int routingStart = 0) => new()
    {
        RequestId = "reference",
        PromptTokenIds = prompt,
        Sampling = new SamplingParams { Temperature = 0, MaxTokens = maxTokens },
        N = n,
        RoutingStart = routingStart,
    };

    /// <summary>Checks DESIGN.md's wire form against the format and returns its data bytes.</summary>
    public static byte[] DecodeWire(JsonElement routed, RoutingFormat format, int expectedStart, int expectedRows)
    {
        Assert.Equal(expectedStart, routed.GetProperty("start").GetInt32());
        var shape = routed.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(new[] { expectedRows, format.MoeLayerCount, format.TopK }, shape);
        Assert.Equal(format.NumpyName, routed.GetProperty("dtype").GetString());
        Assert.Equal(format.MoeLayers, routed.GetProperty("moe_layers").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        Assert.Equal("base64", routed.GetProperty("encoding").GetString());
        var data = Convert.FromBase64String(routed.GetProperty("data").GetString()!);
        Assert.Equal(expectedRows * format.RowBytes, data.Length);
        return data;
    }

    /// <summary>SGLang's int32 <c>[rows, num_hidden_layers, K]</c> as the engine's rows would give it: dense layers 0.</summary>
    public static byte[] SglangLayout(RoutingRows rows, int numHiddenLayers)
    {
        var format = rows.Format;
        var bytes = new byte[rows.RowCount * numHiddenLayers * format.TopK * 4];
        for (var r = 0; r < rows.RowCount; r++)
        {
            for (var m = 0; m < format.MoeLayerCount; m++)
            {
                for (var j = 0; j < format.TopK; j++)
                {
                    var id = format.Get(rows.Data, (((r * format.MoeLayerCount) + m) * format.TopK) + j);
                    BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(((((r * numHiddenLayers) + format.MoeLayers[m]) * format.TopK) + j) * 4), id);
                }
            }
        }
        return bytes;
    }

    public static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();

    private sealed class Sink : IRequestSink
    {
        public RequestResult? Result { get; private set; }

        public void OnDelta(StreamDelta delta)
        {
        }

        public void OnFinished(RequestResult result) => Result = result;
    }
}
