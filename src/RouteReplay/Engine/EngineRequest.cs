namespace RouteReplay.Engine;

/// <summary>
/// One generation request. <see cref="N"/> choices share the prompt's blocks; with a seed, choice <c>i</c> samples
/// with seed + i. <see cref="RoutingStart"/> is the number of routing rows the client already holds.
/// </summary>
public sealed record EngineRequest
{
    public required string RequestId { get; init; }

    public required IReadOnlyList<int> PromptTokenIds { get; init; }

    public SamplingParams Sampling { get; init; } = new();

    public int N { get; init; } = 1;

    public bool ReturnRouting { get; init; } = true;

    public int RoutingStart { get; init; }

    /// <summary>Null: no logprobs; 0: the sampled token's; k: also the k most likely alternatives.</summary>
    public int? Logprobs { get; init; }

    internal void Validate(int maxModelLen)
    {
        Sampling.Validate();
        if (PromptTokenIds.Count == 0)
        {
            throw new ArgumentException("the prompt has no tokens", "prompt");
        }
        if (PromptTokenIds.Count >= maxModelLen)
        {
            throw new ArgumentException($"the prompt has {PromptTokenIds.Count} tokens but the model length (max_model_len) is {maxModelLen}, which leaves no room to generate", "prompt");
        }
        if (N is < 1 or > 128)
        {
            throw new ArgumentException($"n must be in 1..128, got {N}", "n");
        }
        if (RoutingStart < 0)
        {
            throw new ArgumentException($"routed_experts_start must be >= 0, got {RoutingStart}", "routed_experts_start");
        }
        if (Logprobs is < 0 or > 20)
        {
            throw new ArgumentException($"logprobs must be in 0..20, got {Logprobs}", "logprobs");
        }
    }
}
