namespace RouteReplay.Server.Router;

/// <summary>
/// Chooses the worker for a generation request by <see cref="RouterOptions.Policy"/>, among the workers not tried for
/// it yet: those that are up, else (every one down) the others. Cache-aware choice, as SGLang's router makes it: the
/// worker whose recently sent prompts share the most leading blocks with this prompt (ties: the least loaded), unless
/// it is overloaded relative to the least loaded worker, that is both more than
/// <see cref="RouterOptions.BalanceAbsThreshold"/> requests in flight beyond it and more than
/// <see cref="RouterOptions.BalanceRelThreshold"/> times its count; with no block shared, the least loaded.
/// </summary>
internal sealed class WorkerChooser(RouterOptions options)
{
    private int _turn;

    public (Worker Worker, ChoiceReason Reason)? Choose(IReadOnlyList<Worker> workers, PromptKey? prompt, IReadOnlySet<Worker> tried)
    {
        var candidates = Candidates(workers, tried);
        if (candidates.Length == 0)
        {
            return null;
        }
        var turn = Interlocked.Increment(ref _turn);
        if (options.Policy == WorkerPolicy.RoundRobin)
        {
            return (candidates[(int)((uint)turn % (uint)candidates.Length)], ChoiceReason.RoundRobin);
        }
        var byLoad = Upstream.ByLoad(candidates, w => w.Server, turn);
        var least = byLoad[0];
        if (options.Policy == WorkerPolicy.LeastLoad || prompt is null || prompt.Blocks.Length == 0)
        {
            return (least, ChoiceReason.LeastLoaded);
        }
        var (best, matched) = byLoad.Select(w => (Worker: w, Matched: w.Match(prompt))).MaxBy(m => m.Matched);
        if (matched == 0)
        {
            return (least, ChoiceReason.LeastLoaded);
        }
        return Overloaded(best.Server.Outstanding, least.Server.Outstanding) ? (least, ChoiceReason.Balance) : (best, ChoiceReason.CacheHit);
    }

    /// <summary>The least loaded of the workers not tried yet, whatever the policy.</summary>
    public (Worker Worker, ChoiceReason Reason)? LeastLoaded(IReadOnlyList<Worker> workers, IReadOnlySet<Worker> tried)
    {
        var candidates = Candidates(workers, tried);
        return candidates.Length == 0 ? null : (Upstream.ByLoad(candidates, w => w.Server, Interlocked.Increment(ref _turn))[0], ChoiceReason.LeastLoaded);
    }

    private static Worker[] Candidates(IReadOnlyList<Worker> workers, IReadOnlySet<Worker> tried)
    {
        var untried = workers.Where(w => !tried.Contains(w)).ToArray();
        return untried.Any(w => w.Server.IsUp) ? [.. untried.Where(w => w.Server.IsUp)] : untried;
    }

    private bool Overloaded(int load, int leastLoad) =>
        load - leastLoad > options.BalanceAbsThreshold && load > leastLoad * options.BalanceRelThreshold;
}
