namespace RouteReplay.Engine;

/// <summary>Counters of an engine since it started.</summary>
public sealed class EngineStats
{
    public long Steps { get; internal set; }

    /// <summary>Tokens run through the forward (prefill chunks and decodes).</summary>
    public long ComputedTokens { get; internal set; }

    /// <summary>
    /// Prompt tokens served from the prefix cache instead of computed, per choice as each is admitted: the later choices
    /// of an n &gt; 1 request count the prompt blocks they share with the first.
    /// </summary>
    public long PrefixCacheHitTokens { get; internal set; }

    /// <summary>Prompt tokens of ended requests, once per request (not per choice), counted when the request ends.</summary>
    public long PromptTokens { get; internal set; }

    /// <summary>
    /// The part of <see cref="PromptTokens"/> served from the prefix cache: each ended request's
    /// <see cref="Usage.CachedPromptTokens"/> (its first choice's hits), counted with its prompt tokens, so never more than they.
    /// </summary>
    public long CachedPromptTokens { get; internal set; }

    public long GeneratedTokens { get; internal set; }

    public int PeakBatchedTokens { get; internal set; }

    public long RequestsFinished { get; internal set; }

    public long RequestsAborted { get; internal set; }

    /// <summary>Requests ended with an error because a step they were part of threw.</summary>
    public long RequestsFailed { get; internal set; }

    /// <summary>Steps that threw after scheduling; each failed the requests it ran, and the engine kept serving the rest.</summary>
    public long StepFailures { get; internal set; }

    /// <summary>Requests failed because a router saw logits that are not finite for one of their tokens.</summary>
    public long NonFiniteRouterLogitFailures { get; internal set; }

    public long RoutingIntegrityFailures { get; internal set; }

    public long RoutingBytesReturned { get; internal set; }

    public long PreemptionsBySwap { get; internal set; }

    public long PreemptionsByRecompute { get; internal set; }

    /// <summary>Tokens computed again after a preemption by recompute (with their routing replayed).</summary>
    public long RecomputedTokens { get; internal set; }

    /// <summary>Prefix-cache hits refused because the block's routing rows differ from a recomputing request's saved rows.</summary>
    public long PrefixHitsRefusedForRouting { get; internal set; }

    /// <summary>Decode side: requests whose prompt blocks were imported from a prefill source.</summary>
    public long RemotePrefills { get; internal set; }

    /// <summary>Decode side: imports that failed (a source that died, stalled, refused or sent bad data).</summary>
    public long RemotePrefillFailures { get; internal set; }

    /// <summary>Decode side: failed imports retried on the request's next prefill source.</summary>
    public long PrefillRetries { get; internal set; }

    /// <summary>Decode side: requests whose prompt was computed here after all (every source failed, or too many choices to import).</summary>
    public long PrefillFallbacksLocal { get; internal set; }

    /// <summary>Decode side: requests failed because every prefill source failed and the fallback is to fail.</summary>
    public long PrefillFallbacksError { get; internal set; }

    /// <summary>Decode side: block payloads copied in from prefill sources.</summary>
    public long ImportedBlocks { get; internal set; }

    /// <summary>Decode side: cached prompt blocks kept instead of imported (the prefill source's rows agreed).</summary>
    public long ImportKeptBlocks { get; internal set; }

    /// <summary>Prefill side: block payloads copied out for decode engines.</summary>
    public long ExportedBlocks { get; internal set; }

    /// <summary>Prefill side: prompt blocks not sent because the decode engine's cached copy held the same rows.</summary>
    public long ExportKeptBlocks { get; internal set; }
}
