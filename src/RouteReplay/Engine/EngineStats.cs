namespace RouteReplay.Engine;

/// <summary>Counters of an engine since it started.</summary>
public sealed class EngineStats
{
    public long Steps { get; internal set; }

    /// <summary>Tokens run through the forward (prefill chunks and decodes).</summary>
    public long ComputedTokens { get; internal set; }

    /// <summary>Prompt tokens served from the prefix cache instead of computed.</summary>
    public long PrefixCacheHitTokens { get; internal set; }

    public long PromptTokens { get; internal set; }

    public long GeneratedTokens { get; internal set; }

    public int PeakBatchedTokens { get; internal set; }

    public long RequestsFinished { get; internal set; }

    public long RequestsAborted { get; internal set; }

    /// <summary>Requests ended with an error because a step they were part of threw.</summary>
    public long RequestsFailed { get; internal set; }

    /// <summary>Steps that threw after scheduling; each failed the requests it ran, and the engine kept serving the rest.</summary>
    public long StepFailures { get; internal set; }

    public long RoutingIntegrityFailures { get; internal set; }

    public long RoutingBytesReturned { get; internal set; }

    public long PreemptionsBySwap { get; internal set; }

    public long PreemptionsByRecompute { get; internal set; }

    /// <summary>Tokens computed again after a preemption by recompute (with their routing replayed).</summary>
    public long RecomputedTokens { get; internal set; }

    /// <summary>Prefix-cache hits refused because the block's routing rows differ from a recomputing request's saved rows.</summary>
    public long PrefixHitsRefusedForRouting { get; internal set; }
}
