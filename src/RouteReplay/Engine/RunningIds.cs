namespace RouteReplay.Engine;

/// <summary>
/// The ids the running requests hold: each request's id and, for a request of n &gt; 1 choices, its choices' ids
/// (<see cref="EngineRequest.ChoiceId"/>). No two running requests share one, so an id a client sees names one request
/// or one choice.
/// </summary>
internal sealed class RunningIds
{
    private readonly Dictionary<string, string> _owners = new(StringComparer.Ordinal);

    /// <summary>Throws an <see cref="ArgumentException"/> (parameter <c>request_id</c>) when an id of <paramref name="request"/> is a running request's.</summary>
    public void CheckFree(EngineRequest request)
    {
        if (_owners.TryGetValue(request.RequestId, out var owner))
        {
            throw new ArgumentException(
                $"the id '{request.RequestId}' is the id of a choice of the running request '{owner}'; ids must be unique among running requests and their choices",
                "request_id");
        }
        for (var choice = 0; request.N > 1 && choice < request.N; choice++)
        {
            var id = request.ChoiceId(choice);
            if (_owners.TryGetValue(id, out owner))
            {
                throw new ArgumentException(
                    $"choice {choice} of the request '{request.RequestId}' would have the id '{id}', which the running request '{owner}' holds; ids must be unique among running requests and their choices",
                    "request_id");
            }
        }
    }

    public void Add(EngineRequest request)
    {
        _owners.Add(request.RequestId, request.RequestId);
        for (var choice = 0; request.N > 1 && choice < request.N; choice++)
        {
            _owners.Add(request.ChoiceId(choice), request.RequestId);
        }
    }

    public void Remove(EngineRequest request)
    {
        _owners.Remove(request.RequestId);
        for (var choice = 0; request.N > 1 && choice < request.N; choice++)
        {
            _owners.Remove(request.ChoiceId(choice));
        }
    }
}
