using System.Text;
using RouteReplay.Server.Router;

namespace RouteReplay.Tests.Disaggregation;

/// <summary>The router tells a relayed stream that ended with an error event, however the stream was cut into chunks.</summary>
public sealed class SseErrorDetectorTests
{
    private const string Ok = "data: {\"text\":\"an \\\"error\\\" in the text is no error\"}\n\ndata: [DONE]\n\n";
    private const string Failed = "data: {\"text\":\"partial\"}\n\ndata: {\"error\":{\"message\":\"the request failed\"}}\n\ndata: [DONE]\n\n";

    public static TheoryData<string, bool> Streams => new() { { Ok, false }, { Failed, true }, { "data: {\"error\":{\"message\":\"at once\"}}\n\n", true } };

    [Theory]
    [MemberData(nameof(Streams))]
    public void An_error_event_is_seen_at_every_chunking_and_nothing_else_is(string stream, bool failed)
    {
        var bytes = Encoding.UTF8.GetBytes(stream);
        for (var size = 1; size <= bytes.Length; size++)
        {
            var detector = new SseErrorDetector();
            for (var at = 0; at < bytes.Length; at += size)
            {
                detector.Feed(bytes.AsSpan(at, Math.Min(size, bytes.Length - at)));
            }
            Assert.True(detector.Seen == failed, $"chunks of {size} bytes");
        }
    }
}
