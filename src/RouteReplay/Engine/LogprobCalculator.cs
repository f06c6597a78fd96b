namespace RouteReplay.Engine;

/// <summary>Log-probabilities under the model's own distribution (before temperature), over the tokenizer's ids.</summary>
internal static class LogprobCalculator
{
    public static TokenLogprob Compute(ReadOnlySpan<float> logits, int tokenLimit, int sampled, int alternatives)
    {
        var row = logits[..Math.Min(tokenLimit, logits.Length)];
        var max = float.NegativeInfinity;
        foreach (var v in row)
        {
            max = MathF.Max(max, v);
        }
        var sum = 0.0;
        foreach (var v in row)
        {
            sum += Math.Exp(v - max);
        }
        var logNormalizer = max + (float)Math.Log(sum);
        var top = new (int TokenId, float Logprob)[Math.Min(alternatives, row.Length)];
        var filled = 0;
        for (var id = 0; id < row.Length && top.Length > 0; id++)
        {
            var value = row[id] - logNormalizer;
            if (filled < top.Length)
            {
                top[filled++] = (id, value);
            }
            else if (value > top[^1].Logprob)
            {
                top[^1] = (id, value);
            }
            else
            {
                continue;
            }
            for (var i = filled - 1; i > 0 && top[i].Logprob > top[i - 1].Logprob; i--)
            {
                (top[i], top[i - 1]) = (top[i - 1], top[i]);
            }
        }
        return new TokenLogprob(sampled, row[sampled] - logNormalizer, top);
    }
}
