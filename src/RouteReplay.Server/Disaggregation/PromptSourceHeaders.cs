using Microsoft.AspNetCore.Http;
using RouteReplay.Engine;

namespace RouteReplay.Server.Disaggregation;

/// <summary>A decode server's answer says where its prompt was computed (<see cref="FleetHeaders.Prompt"/> and the rest).</summary>
public static class PromptSourceHeaders
{
    /// <summary>Before any remote prefill: the prompt is computed here, and why a prefill header was ignored.</summary>
    public static void WriteLocal(HttpResponse response, string? ignored)
    {
        response.Headers[FleetHeaders.Prompt] = FleetHeaders.Local;
        if (ignored is not null)
        {
            response.Headers[FleetHeaders.PrefillIgnored] = ignored;
        }
    }

    /// <summary>Once a remote prefill has settled (the request's first event was seen): where the prompt came from.</summary>
    public static void Write(HttpResponse response, PrefillReport report)
    {
        if (response.HasStarted)
        {
            return;
        }
        if (report.TransferredFrom is { } source)
        {
            response.Headers[FleetHeaders.Prompt] = FleetHeaders.Transferred;
            response.Headers[FleetHeaders.PrefillServer] = source;
        }
        else
        {
            response.Headers[FleetHeaders.Prompt] = FleetHeaders.Local;
        }
        if (report.Failed is { Count: > 0 } failed)
        {
            response.Headers[FleetHeaders.PrefillFailed] = string.Join(",", failed);
        }
    }

    /// <summary>
    /// For a stream with a remote prefill: waits for its first event (the prompt is in, from a prefill server or
    /// computed here) so that the headers can say which, before the stream starts.
    /// </summary>
    public static async Task WaitAndWriteAsync(HttpResponse response, EngineHost.RunningRequest running, CancellationToken cancellationToken)
    {
        if (running.Prefill is { } report)
        {
            await running.Stream.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false);
            Write(response, report);
        }
    }
}
