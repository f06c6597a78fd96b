using System.Numerics.Tensors;

namespace RouteReplay.Engine;

/// <summary>
/// Picks the next token from one row of logits. Only ids below <c>tokenLimit</c> (the tokenizer's token count) are
/// candidates: the padded rows of the embedding past the last real token are never sampled. Candidates are ranked by
/// logit with ties to the lower id, so greedy and seeded sampling are reproducible. Reuses its buffers: one sampler
/// per thread.
/// </summary>
/// <remarks>
/// The token drawn is the first candidate whose running sum of weights exceeds a uniform draw times the candidates'
/// total, the sums taken in candidate order (id order without top-k and top-p, rank order with them): the weights are
/// summed in exactly that order, so a seed gives the same token whatever finds the candidates.
/// </remarks>
public sealed class Sampler
{
    private readonly int[] _order;
    private readonly double[] _weights;
    private readonly double[] _runningSums;
    private readonly LogitRanking _ranking;

    public Sampler(int vocabSize)
    {
        _order = new int[vocabSize];
        _weights = new double[vocabSize];
        _runningSums = new double[vocabSize];
        _ranking = new LogitRanking(vocabSize);
    }

    public int Sample(ReadOnlySpan<float> logits, int tokenLimit, SamplingParams sampling, ref SeededRandom random)
    {
        var limit = Math.Min(tokenLimit, logits.Length);
        if (sampling.IsGreedy)
        {
            return ArgMax(logits[..limit]);
        }
        var candidates = RankCandidates(logits[..limit], sampling, out var ranked);
        var sums = _runningSums.AsSpan(0, candidates);
        var target = random.NextDouble() * sums[^1];
        var chosen = FirstAbove(sums, target);
        return ranked ? _order[chosen] : chosen;
    }

    /// <summary>The index of the largest logit, the first on ties (vectorized: a GPU step's rows are 150k wide).</summary>
    public static int ArgMax(ReadOnlySpan<float> logits) => TensorPrimitives.IndexOfMax(logits);

    /// <summary>
    /// Computes every token's weight <c>exp((logit - max) / T)</c>. Without top-k and top-p every id is a candidate, in
    /// id order; otherwise fills the front of <c>_order</c> with the candidates in descending logit order (ties to the
    /// lower id): the top-k when k is set, cut further to the smallest prefix whose mass reaches top-p, ordering only
    /// as many ids as it keeps (<see cref="LogitRanking"/>). Fills <c>_runningSums</c> with the candidates' running
    /// sums of weights and returns their count.
    /// </summary>
    private int RankCandidates(ReadOnlySpan<float> logits, SamplingParams sampling, out bool ranked)
    {
        var n = logits.Length;
        var max = logits[ArgMax(logits)];
        var inverseTemperature = 1.0 / sampling.Temperature;
        var sums = _runningSums.AsSpan(0, n);
        var all = 0.0;
        for (var i = 0; i < n; i++)
        {
            _weights[i] = Math.Exp((logits[i] - max) * inverseTemperature);
            all += _weights[i];
            sums[i] = all;
        }
        var wanted = sampling.TopK > 0 ? Math.Min(sampling.TopK, n) : n;
        ranked = wanted < n || sampling.TopP < 1f;
        if (!ranked)
        {
            return n;
        }
        _ranking.Start(logits, max);
        var count = 0;
        var mass = 0.0;
        if (sampling.TopK > 0)
        {
            while (count < wanted)
            {
                mass += RankNext(count++);
                sums[count - 1] = mass;
            }
            all = mass;
        }
        if (sampling.TopP >= 1f)
        {
            return count;
        }
        var cumulative = 0.0;
        var keep = 0;
        while (keep < wanted)
        {
            if (keep == count)
            {
                RankNext(count++);
            }
            cumulative += _weights[_order[keep]];
            sums[keep++] = cumulative;
            if (cumulative >= sampling.TopP * all)
            {
                break;
            }
        }
        return keep;
    }

    /// <summary>Puts the next id in rank order at <paramref name="position"/> of <c>_order</c> and returns its weight.</summary>
    private double RankNext(int position)
    {
        var id = _ranking.Next();
        _order[position] = id;
        return _weights[id];
    }

    /// <summary>The first index whose running sum exceeds <paramref name="target"/>, else the last (running sums never decrease).</summary>
    private static int FirstAbove(ReadOnlySpan<double> sums, double target)
    {
        int low = 0, high = sums.Length - 1;
        while (low < high)
        {
            var middle = (low + high) >>> 1;
            if (target < sums[middle])
            {
                high = middle;
            }
            else
            {
                low = middle + 1;
            }
        }
        return low;
    }
}
