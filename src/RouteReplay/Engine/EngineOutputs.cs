using RouteReplay.Routing;

namespace RouteReplay.Engine;

/// <summary>The log-probability of one token under the model's distribution, with its most likely alternatives.</summary>
public sealed record TokenLogprob(int TokenId, float Logprob, IReadOnlyList<(int TokenId, float Logprob)> TopAlternatives);

/// <summary>Routing rows <c>[Start, Start + RowCount)</c> of one choice, <c>[rows, L_moe, K]</c> little-endian.</summary>
public sealed record RoutingRows(int Start, RoutingFormat Format, byte[] Data)
{
    public int RowCount => Data.Length / Format.RowBytes;
}

public sealed record Usage(int PromptTokens, int CompletionTokens, int CachedPromptTokens)
{
    public int TotalTokens => PromptTokens + CompletionTokens;
}

/// <summary>What a request produced in one step for one choice: new token ids and the text they completed.</summary>
public sealed record StreamDelta(string RequestId, int Choice, IReadOnlyList<int> TokenIds, string Text, IReadOnlyList<TokenLogprob>? Logprobs);

public sealed record ChoiceResult(
    int Index,
    IReadOnlyList<int> TokenIds,
    string Text,
    FinishReason FinishReason,
    RoutingRows? Routing,
    IReadOnlyList<TokenLogprob>? Logprobs)
{
    /// <summary>The stop string the choice stopped at, when it stopped at one.</summary>
    public string? MatchedStop { get; init; }
}

/// <summary>A finished request. <see cref="Error"/> is set when it failed (then choices may be incomplete).</summary>
public sealed record RequestResult(
    string RequestId,
    IReadOnlyList<int> PromptTokenIds,
    IReadOnlyList<ChoiceResult> Choices,
    Usage Usage,
    Exception? Error = null)
{
    /// <summary>Per choice, the rows of auxiliary channels (registered in tests), keyed by channel name.</summary>
    public IReadOnlyList<IReadOnlyDictionary<string, byte[]>?> AuxiliaryRows { get; init; } = [];
}
