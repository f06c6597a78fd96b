using RouteReplay.Routing;

namespace RouteReplay.Engine;

/// <summary>
/// A finished request: its tokens and the routing rows of positions <c>[0, T-1)</c>, <c>T</c> = prompt plus output
/// tokens (the last sampled token is never fed through the model), as <c>[T-1, L_moe, K]</c> little-endian elements.
/// </summary>
public sealed record GenerationResult(
    IReadOnlyList<int> PromptTokenIds,
    IReadOnlyList<int> OutputTokenIds,
    FinishReason FinishReason,
    RoutingFormat RoutingFormat,
    byte[] Routing)
{
    public int RoutingRowCount => Routing.Length / RoutingFormat.RowBytes;
}
