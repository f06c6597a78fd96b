namespace RouteReplay.Model.Checkpoints;

/// <summary>
/// Multi-head latent attention (DeepSeek-V2/V3, Moonlight, Kimi-K2). Each token's K and V are compressed into one
/// latent of <see cref="KvLoraRank"/> floats (after <c>kv_a_layernorm</c>) plus one RoPE key of
/// <see cref="QkRopeHeadDim"/> floats shared by all heads; that pair is all the KV cache holds per layer. A head's
/// key is <c>[kv_b_proj_k(latent) | rope key]</c> and its value <c>kv_b_proj_v(latent)</c>.
/// </summary>
/// <param name="QLoraRank">Rank of the query compression (<c>q_lora_rank</c>); 0 when queries are projected directly.</param>
/// <param name="KvLoraRank">Width of the compressed KV latent (<c>kv_lora_rank</c>).</param>
/// <param name="QkNopeHeadDim">Per-head query/key dimensions without RoPE (<c>qk_nope_head_dim</c>).</param>
/// <param name="QkRopeHeadDim">Per-head query/key dimensions with RoPE (<c>qk_rope_head_dim</c>).</param>
/// <param name="VHeadDim">Per-head value width (<c>v_head_dim</c>).</param>
/// <param name="RopeInterleave">Whether RoPE rotates adjacent pairs (<c>rope_interleave</c>, DeepSeek's layout) rather than halves.</param>
/// <param name="SoftmaxScaleFactor">Factor on <c>1/sqrt(qk_head_dim)</c> (YaRN's <c>mscale_all_dim</c> squared; 1 without).</param>
public sealed record MlaSpec(
    int QLoraRank,
    int KvLoraRank,
    int QkNopeHeadDim,
    int QkRopeHeadDim,
    int VHeadDim,
    bool RopeInterleave,
    double SoftmaxScaleFactor = 1.0)
{
    /// <summary>Query/key width of one head: <c>qk_nope_head_dim + qk_rope_head_dim</c>.</summary>
    public int QkHeadDim => QkNopeHeadDim + QkRopeHeadDim;
}
