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

    public long RoutingIntegrityFailures { get; internal set; }

    public long RoutingBytesReturned { get; internal set; }

    public long PreemptionsBySwap { get; internal set; }

    public long PreemptionsByRecompute { get; internal set; }

    /// <summary>Tokens computed again after a preemption by recompute (with their routing replayed).</summary>
    public long RecomputedTokens { get; internal set; }
}
