namespace RouteReplay.Server.Router;

/// <summary>How the router chooses a worker for a generation request (<c>--policy</c>, SGLang's names).</summary>
public enum WorkerPolicy
{
    /// <summary>
    /// The worker whose recent prompts share the most leading blocks with the request's prompt, unless it is overloaded
    /// relative to the least loaded worker; else the least loaded.
    /// </summary>
    CacheAware,

    /// <summary>Each worker in turn.</summary>
    RoundRobin,

    /// <summary>The worker with the fewest requests in flight.</summary>
    LeastLoad,
}

/// <summary>The policies' names as <c>--policy</c> takes them (SGLang's).</summary>
public static class PolicyNames
{
    public static IReadOnlyDictionary<string, WorkerPolicy> All { get; } = new Dictionary<string, WorkerPolicy>(StringComparer.Ordinal)
    {
        ["cache_aware"] = WorkerPolicy.CacheAware,
        ["round_robin"] = WorkerPolicy.RoundRobin,
        ["least_load"] = WorkerPolicy.LeastLoad,
    };

    public static string Name(WorkerPolicy policy) => All.First(p => p.Value == policy).Key;
}
