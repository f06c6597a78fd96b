using System.Text.Encodings.Web;
using System.Text.Json;

namespace RouteReplay.Server.Http;

/// <summary>The options every response's JSON writer uses: non-ASCII text written as is, not as \u escapes.</summary>
public static class JsonOutput
{
    public static readonly JsonWriterOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}
