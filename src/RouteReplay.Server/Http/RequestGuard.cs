using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace RouteReplay.Server.Http;

/// <summary>
/// The middleware every server of the project puts first: the API key check, then OpenAI-style errors for every
/// failure (an unexpected one logged and answered 500, a client that went away answered nothing), then the response
/// counted.
/// </summary>
public sealed class RequestGuard(ApiKeyCheck? apiKey, ILogger logger, Action<HttpContext> countResponse)
{
    public async Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        try
        {
            if (apiKey is not null && !ApiKeyCheck.IsOpen(context.Request.Path) && !apiKey.IsAuthorized(context.Request))
            {
                throw new ApiException(401, "a valid API key is required: send 'Authorization: Bearer KEY'", null, "invalid_api_key");
            }
            await next(context).ConfigureAwait(false);
            if (context.Response.StatusCode == StatusCodes.Status405MethodNotAllowed && !context.Response.HasStarted)
            {
                throw new ApiException(405, $"{context.Request.Method} is not allowed on {context.Request.Path}", null, "method_not_allowed");
            }
        }
        catch (ApiException e)
        {
            await ErrorResponses.WriteAsync(context, e).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away (or the server is shutting down); its request was aborted with it.
        }
        catch (Exception e)
        {
            logger.LogError(e, "{Method} {Path} failed", context.Request.Method, context.Request.Path);
            await ErrorResponses.WriteAsync(context, 500, $"internal error: {e.Message}", null, "internal_error").ConfigureAwait(false);
        }
        finally
        {
            countResponse(context);
        }
    }
}
