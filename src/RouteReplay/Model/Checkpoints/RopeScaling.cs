namespace RouteReplay.Model.Checkpoints;

/// <summary>Rotary-embedding scaling of a model; absent (null on <see cref="ModelConfig"/>) for plain RoPE.</summary>
/// <param name="Type">The scaling type: <c>linear</c> or <c>yarn</c>.</param>
/// <param name="Factor">The context extension factor.</param>
/// <param name="OriginalMaxPositionEmbeddings">The pre-extension context length (YaRN), if given.</param>
/// <param name="AttentionFactor">The attention temperature factor (YaRN), if given.</param>
/// <param name="BetaFast">The YaRN fast-rotation boundary, if given.</param>
/// <param name="BetaSlow">The YaRN slow-rotation boundary, if given.</param>
public sealed record RopeScaling(
    string Type,
    double Factor,
    int? OriginalMaxPositionEmbeddings,
    double? AttentionFactor,
    double? BetaFast,
    double? BetaSlow);
