using System.Buffers;
using System.Text.Json;

namespace RouteReplay.Server.Http;

/// <summary>Writes server-sent events (<c>data: JSON\n\n</c>) into a buffer writer, reusing one JSON writer.</summary>
public sealed class SseWriter(IBufferWriter<byte> output)
{
    private static readonly byte[] Prefix = "data: "u8.ToArray();
    private static readonly byte[] Suffix = "\n\n"u8.ToArray();
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    private readonly Utf8JsonWriter _json = new(output, JsonOutput.Options);

    /// <summary>Starts one event and returns the JSON writer for its payload; call <see cref="EndEvent"/> after.</summary>
    public Utf8JsonWriter BeginEvent()
    {
        output.Write(Prefix);
        _json.Reset(output);
        return _json;
    }

    public void EndEvent()
    {
        _json.Flush();
        output.Write(Suffix);
    }

    public void WriteError(int status, string message, string code)
    {
        var writer = BeginEvent();
        ErrorResponses.WriteBody(writer, status, message, null, code);
        EndEvent();
    }

    public void WriteDone() => output.Write(Done);
}
