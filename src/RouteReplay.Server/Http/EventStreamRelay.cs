using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using RouteReplay.Backends;
using RouteReplay.Engine;
using RouteReplay.Routing;
using RouteReplay.Server.Disaggregation;
using RouteReplay.Server.Metrics;

namespace RouteReplay.Server.Http;

/// <summary>
/// Turns one request's engine events into a response: the whole result at once, or server-sent events: each delta as it comes, then the final events or, if the
/// request failed, an error event (never routing), then <c>[DONE]</c>. A client that goes away ends the relay; the
/// request is aborted by its stream's owner.
/// </summary>
internal static class EventStreamRelay
{
    /// <summary>Waits for the request's result, skipping its deltas.</summary>
    public static async Task<RequestResult> ResultAsync(HttpContext context, EngineHost.RunningRequest running)
    {
        await foreach (var item in running.Stream.ReadAllAsync(context.RequestAborted).ConfigureAwait(false))
        {
            if (item is RequestFinished finished)
            {
                if (running.Prefill is { } prefill)
                {
                    PromptSourceHeaders.Write(context.Response, prefill);
                }
                return finished.Result;
            }
        }
        throw new OperationCanceledException("the request's stream ended without a result", context.RequestAborted);
    }

    /// <summary>
    /// Throws a 500, counted as an error, when the request failed (a routing integrity failure among others); its routing
    /// is never returned. Otherwise returns the outcome to count once the answer is written.
    /// </summary>
    public static RequestOutcome CheckResult(EngineHost.RunningRequest running, ILogger logger, RequestResult result)
    {
        if (result.Error is { } error)
        {
            running.CountOutcome(RequestOutcome.Error);
            LogFailure(logger, result.RequestId, error);
            throw new ApiException(500, $"the request failed: {error.Message}", null, ErrorCode(error));
        }
        return Outcome(result);
    }

    private static RequestOutcome Outcome(RequestResult result) =>
        result.Choices.Any(c => c.FinishReason == FinishReason.Abort) ? RequestOutcome.Aborted : RequestOutcome.Ok;

    private static string ErrorCode(Exception error) => error switch
    {
        RoutingIntegrityException => "routing_integrity_failure",
        NonFiniteRouterLogitsException => "nonfinite_router_logits",
        DeviceFaultException => "device_fault",
        _ => "engine_error",
    };

    /// <summary>A device fault fails every request at once and the server logs it once, so its requests are not logged one by one.</summary>
    private static void LogFailure(ILogger logger, string requestId, Exception error)
    {
        if (error is not DeviceFaultException)
        {
            logger.LogError(error, "request {Id} failed", requestId);
        }
    }

    public static async Task RelayAsync(
        HttpContext context,
        ILogger logger,
        EngineHost.RunningRequest running,
        Action<SseWriter> onStart,
        Action<SseWriter, StreamDelta> onDelta,
        Action<SseWriter, RequestResult> onFinish)
    {
        var http = context.Response;
        var cancel = context.RequestAborted;
        http.ContentType = "text/event-stream";
        http.Headers.CacheControl = "no-cache";
        http.Headers["X-Accel-Buffering"] = "no";
        await PromptSourceHeaders.WaitAndWriteAsync(http, running, cancel).ConfigureAwait(false);
        await http.StartAsync(cancel).ConfigureAwait(false);
        await http.BodyWriter.FlushAsync(cancel).ConfigureAwait(false);
        var sse = new SseWriter(http.BodyWriter);
        onStart(sse);
        var reader = running.Stream.Reader;
        RequestResult? result = null;
        while (result is null && await reader.WaitToReadAsync(cancel).ConfigureAwait(false))
        {
            while (reader.TryRead(out var item))
            {
                if (item is RequestDelta delta)
                {
                    onDelta(sse, delta.Delta);
                }
                else if (item is RequestFinished finished)
                {
                    running.Stream.MarkFinished();
                    result = finished.Result;
                }
            }
            if (result is null && (await http.BodyWriter.FlushAsync(cancel).ConfigureAwait(false)).IsCompleted)
            {
                running.CountOutcome(RequestOutcome.Disconnected);
                return;
            }
        }
        if (result is null)
        {
            return;
        }
        if (result.Error is { } error)
        {
            running.CountOutcome(RequestOutcome.Error);
            LogFailure(logger, result.RequestId, error);
            sse.WriteError(500, $"the request failed: {error.Message}", ErrorCode(error));
        }
        else
        {
            running.CountOutcome(Outcome(result));
            onFinish(sse, result);
        }
        sse.WriteDone();
        await http.BodyWriter.FlushAsync(cancel).ConfigureAwait(false);
    }
}
