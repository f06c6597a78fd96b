namespace RouteReplay.Model.Checkpoints;

/// <summary>How a router's logits become scores.</summary>
public enum RouterScoring
{
    /// <summary>Softmax over every expert (Qwen, OLMoE, Mixtral).</summary>
    Softmax,

    /// <summary>A sigmoid per expert (DeepSeek-V3).</summary>
    Sigmoid,

    /// <summary>Top-k on the logits, then a softmax over the k selected (gpt-oss; Mixtral's original form).</summary>
    SoftmaxOverSelected,
}

/// <summary>Where RMSNorm applies to the query and key projections.</summary>
public enum QkNormKind
{
    /// <summary>Per head, a weight of <c>head_dim</c> (Qwen3).</summary>
    PerHead,

    /// <summary>Over the whole projection, a weight of <c>heads * head_dim</c> (OLMoE).</summary>
    WholeProjection,

    /// <summary>No q/k norm (Qwen2-MoE, Mixtral).</summary>
    None,
}

/// <summary>
/// A router's selection rule. The selection score of an expert is its score (<see cref="Scoring"/>) plus its
/// correction bias when <see cref="CorrectionBias"/>; experts outside the <see cref="TopKGroups"/> best of
/// <see cref="ExpertGroups"/> groups (a group's value is the sum of its two best selection scores) are not eligible.
/// The k eligible experts of highest selection score are chosen, ties to the lower id, and a routing row lists them
/// in that order. Their weights come from the scores without the bias, renormalised when
/// the model's <c>norm_topk_prob</c> says so, times <see cref="ScalingFactor"/>.
/// </summary>
/// <param name="Scoring">Softmax, sigmoid, or softmax over the selected logits.</param>
/// <param name="LogitBias">Whether the router's linear layer has a bias (gpt-oss).</param>
/// <param name="CorrectionBias">Whether an <c>e_score_correction_bias</c> shifts selection (DeepSeek-V3's <c>noaux_tc</c>).</param>
/// <param name="ExpertGroups">Groups the experts are split into (<c>n_group</c>); 1 for none.</param>
/// <param name="TopKGroups">Groups a token may choose from (<c>topk_group</c>).</param>
/// <param name="ScalingFactor">Factor on the routed experts' weights (<c>routed_scaling_factor</c>).</param>
public sealed record RouterSpec(
    RouterScoring Scoring,
    bool LogitBias = false,
    bool CorrectionBias = false,
    int ExpertGroups = 1,
    int TopKGroups = 1,
    double ScalingFactor = 1.0)
{
    /// <summary>Qwen3-MoE's router: a softmax over all experts.</summary>
    public static RouterSpec Softmax { get; } = new(RouterScoring.Softmax);
}
