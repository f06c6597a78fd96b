namespace RouteReplay.Engine;

/// <summary>
/// How one request picks tokens. Temperature 0 is greedy; otherwise the logits are divided by the temperature,
/// restricted to the <see cref="TopK"/> most likely tokens (0 = all) and to the smallest set whose probability
/// reaches <see cref="TopP"/>, and sampled with a generator seeded by <see cref="Seed"/> (random when null).
/// </summary>
public sealed record SamplingParams
{
    public float Temperature { get; init; } = 1f;

    public float TopP { get; init; } = 1f;

    public int TopK { get; init; }

    public ulong? Seed { get; init; }

    /// <summary>Most tokens to generate; null means whatever the model length leaves.</summary>
    public int? MaxTokens { get; init; }

    /// <summary>Token ids that end the choice like an end-of-sequence token (and are kept in the output).</summary>
    public IReadOnlyList<int>? StopTokenIds { get; init; }

    /// <summary>Strings that end the choice; the returned text stops before the first one (its tokens are kept).</summary>
    public IReadOnlyList<string>? Stop { get; init; }

    /// <summary>
    /// Keep the matched stop string, and the rest of the text its token completed, in the returned text (SGLang's
    /// <c>no_stop_trim</c>, vLLM's <c>include_stop_str_in_output</c>).
    /// </summary>
    public bool IncludeStopStringInOutput { get; init; }

    /// <summary>
    /// Keep the text of the token that stopped the choice (an end-of-sequence token or one of <see cref="StopTokenIds"/>)
    /// in the returned text; special tokens have no text either way. SGLang trims it unless <c>no_stop_trim</c>.
    /// </summary>
    public bool IncludeStopTokenText { get; init; } = true;

    public bool IgnoreEos { get; init; }

    public bool IsGreedy => Temperature == 0f || TopK == 1;

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first field with an invalid value.</summary>
    public void Validate()
    {
        if (!float.IsFinite(Temperature) || Temperature < 0f)
        {
            throw new ArgumentException($"temperature must be a finite number >= 0, got {Temperature}", "temperature");
        }
        if (!float.IsFinite(TopP) || TopP <= 0f || TopP > 1f)
        {
            throw new ArgumentException($"top_p must be in (0, 1], got {TopP}", "top_p");
        }
        if (TopK < 0)
        {
            throw new ArgumentException($"top_k must be >= 0 (0 means no limit), got {TopK}", "top_k");
        }
        if (Stop is { } stop && (stop.Count > 16 || stop.Any(string.IsNullOrEmpty)))
        {
            throw new ArgumentException("stop takes at most 16 non-empty strings", "stop");
        }
        if (MaxTokens < 1)
        {
            throw new ArgumentException($"max_tokens must be >= 1, got {MaxTokens}", "max_tokens");
        }
    }
}
