namespace RouteReplay.Engine;

/// <summary>
/// One accepted request, as <see cref="LlmEngine.AddRequest"/> returns it. Aborting by handle ends this request only:
/// request ids are chosen by clients and reused once a request has finished, so an id may name a newer request.
/// </summary>
public sealed class RequestHandle
{
    internal RequestHandle(RequestState state) => State = state;

    public string RequestId => State.Request.RequestId;

    internal RequestState State { get; }
}
