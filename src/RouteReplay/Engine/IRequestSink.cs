namespace RouteReplay.Engine;

/// <summary>Receives a request's progress from the step loop: deltas as tokens are sampled, then the final result.</summary>
public interface IRequestSink
{
    void OnDelta(StreamDelta delta);

    void OnFinished(RequestResult result);
}
