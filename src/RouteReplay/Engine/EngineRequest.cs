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

    /// <summary>The id of choice <paramref name="index"/>: the request's own when it has one choice, else <c>{id}-{index}</c> (SGLang's form).</summary>
    public string ChoiceId(int index) => N > 1 ? $"{RequestId}-{index}" : RequestId;

    public bool ReturnRouting { get; init; } = true;

    public int RoutingStart { get; init; }

    /// <summary>Null: no logprobs; 0: the sampled token's; k: also the k most likely alternatives.</summary>
    public int? Logprobs { get; init; }

    /// <summary>
    /// Decode side of a prefill/decode split: the prompt is computed by one of these sources and its blocks imported
    /// (see <see cref="BlockImport"/>); null computes it here.
    /// </summary>
    public RemotePrefill? RemotePrefill { get; init; }

    /// <summary>
    /// Prefill side of a prefill/decode split: compute the prompt, sample each choice's first token and hand the blocks
    /// out through this export (see <see cref="BlockExport"/>); the request then ends, generating nothing more.
    /// </summary>
    public BlockExport? PrefillExport { get; init; }

    /// <summary>
    /// Throws an <see cref="ArgumentException"/> naming <paramref name="field"/> (the budget field the client wrote:
    /// <c>max_tokens</c>, <c>max_completion_tokens</c>, <c>max_new_tokens</c>, <c>--max-tokens</c>) when a prompt of
    /// <paramref name="promptTokens"/> plus an explicit budget of <paramref name="maxTokens"/> exceed the model length.
    /// </summary>
    public static void CheckFitsModelLength(int promptTokens, int maxTokens, int maxModelLen, string field)
    {
        if ((long)promptTokens + maxTokens > maxModelLen)
        {
            throw new ArgumentException(
                $"this model's maximum context length is {maxModelLen} tokens (--max-model-len), but the request asks for {(long)promptTokens + maxTokens} " +
                $"({promptTokens} in the prompt, {maxTokens} in {field}); lower {field} to at most {Math.Max(0, maxModelLen - promptTokens)} or leave it out",
                field);
        }
    }

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
        if (Sampling.MaxTokens is { } maxTokens)
        {
            CheckFitsModelLength(PromptTokenIds.Count, maxTokens, maxModelLen, "max_tokens");
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
        if (RemotePrefill is not null && PrefillExport is not null)
        {
            throw new ArgumentException("a request is either prefilled elsewhere or prefilled for elsewhere, not both", "request");
        }
    }
}
