using Microsoft.AspNetCore.Http;

namespace RouteReplay.Server.Router;

/// <summary>What the router noted about one request's answer, for its log line and its count in <c>/metrics</c>.</summary>
internal sealed class RelayNotes
{
    /// <summary>Why the answer is an error (5xx), for the log.</summary>
    public string? Error { get; set; }

    /// <summary>The status a stream that failed after its 200 went out is counted as.</summary>
    public int? StreamFailureStatus { get; set; }

    public static RelayNotes Of(HttpContext context)
    {
        if (context.Items[typeof(RelayNotes)] is not RelayNotes notes)
        {
            context.Items[typeof(RelayNotes)] = notes = new RelayNotes();
        }
        return notes;
    }

    /// <summary>The status the request is counted as: its response's, or the failure of a stream that had started.</summary>
    public static int CountedStatus(HttpContext context) =>
        context.Items[typeof(RelayNotes)] is RelayNotes { StreamFailureStatus: { } status } ? status : context.Response.StatusCode;
}
