namespace RouteReplay.Model.Checkpoints;

/// <summary>Rotary-embedding scaling of a model; absent (null on <see cref="ModelConfig"/>) for plain RoPE.</summary>
/// <param name="Type">The scaling type: <c>linear</c> or <c>yarn</c>.</param>
/// <param name="Factor">The context extension factor.</param>
/// <param name="OriginalMaxPositionEmbeddings">The pre-extension context length (YaRN), if given.</param>
/// <param name="AttentionFactor">The attention temperature factor (YaRN), if given.</param>
/// <param name="BetaFast">The YaRN fast-rotation boundary, if given.</param>
/// <param name="BetaSlow">The YaRN slow-rotation boundary, if given.</param>
/// <param name="Mscale">DeepSeek's YaRN <c>mscale</c>, if given.</param>
/// <param name="MscaleAllDim">DeepSeek's YaRN <c>mscale_all_dim</c>, if given (it also scales MLA's softmax).</param>
/// <param name="Truncate">Whether YaRN rounds its correction range to whole dimensions (<c>truncate</c>; gpt-oss: false).</param>
public sealed record RopeScaling(
    string Type,
    double Factor,
    int? OriginalMaxPositionEmbeddings,
    double? AttentionFactor,
    double? BetaFast,
    double? BetaSlow,
    double? Mscale = null,
    double? MscaleAllDim = null,
    bool Truncate = true)
{
    /// <summary>YaRN's attention temperature for a scale: <c>0.1 * mscale * ln(scale) + 1</c>, or 1 when not extending.</summary>
    public static double YarnMscale(double scale, double mscale = 1.0) => scale <= 1 ? 1.0 : (0.1 * mscale * Math.Log(scale)) + 1.0;
}
