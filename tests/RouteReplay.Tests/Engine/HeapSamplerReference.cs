using System.Numerics.Tensors;
using RouteReplay.Engine;

namespace RouteReplay.Tests.Engine;

/// <summary>
/// The sampler as it was before ranking moved to <see cref="Sampler"/>'s bucketed partial sort, kept unchanged as the
/// reference its tokens must equal: it ranks candidates with a heap of the whole row. Picks the next token from one
/// row of logits. Only ids below <c>tokenLimit</c> (the tokenizer's token count) are
/// candidates: the padded rows of the embedding past the last real token are never sampled. Candidates are ranked by
/// logit with ties to the lower id, so greedy and seeded sampling are reproducible. Reuses its buffers: one sampler
/// per thread.
/// </summary>
internal sealed class HeapSamplerReference
{
    private readonly int[] _order;
    private readonly double[] _weights;

    public HeapSamplerReference(int vocabSize)
    {
        _order = new int[vocabSize];
        _weights = new double[vocabSize];
    }

    public int Sample(ReadOnlySpan<float> logits, int tokenLimit, SamplingParams sampling, ref SeededRandom random)
    {
        var limit = Math.Min(tokenLimit, logits.Length);
        if (sampling.IsGreedy)
        {
            return ArgMax(logits[..limit]);
        }
        var candidates = RankCandidates(logits[..limit], sampling, out var total);
        var target = random.NextDouble() * total;
        var cumulative = 0.0;
        for (var i = 0; i < candidates; i++)
        {
            cumulative += _weights[_order[i]];
            if (target < cumulative)
            {
                return _order[i];
            }
        }
        return _order[candidates - 1];
    }

    /// <summary>The index of the largest logit, the first on ties (vectorized: a GPU step's rows are 150k wide).</summary>
    public static int ArgMax(ReadOnlySpan<float> logits) => TensorPrimitives.IndexOfMax(logits);

    /// <summary>
    /// Computes every token's weight <c>exp((logit - max) / T)</c>, then fills the front of <c>_order</c> with the
    /// candidates in descending logit order (ties to the lower id): the top-k when k is set, cut further to the
    /// smallest prefix whose mass reaches top-p. Pops only as many ids from a heap as it keeps. Returns the count and
    /// the candidates' total weight.
    /// </summary>
    private int RankCandidates(ReadOnlySpan<float> logits, SamplingParams sampling, out double kept)
    {
        var n = logits.Length;
        var max = logits[ArgMax(logits)];
        var inverseTemperature = 1.0 / sampling.Temperature;
        var order = _order.AsSpan(0, n);
        var all = 0.0;
        for (var i = 0; i < n; i++)
        {
            order[i] = i;
            _weights[i] = Math.Exp((logits[i] - max) * inverseTemperature);
            all += _weights[i];
        }
        var wanted = sampling.TopK > 0 ? Math.Min(sampling.TopK, n) : n;
        if (wanted == n && sampling.TopP >= 1f)
        {
            kept = all;
            return n;
        }
        var heap = new LogitHeap(order, logits);
        heap.Build();
        var popped = 0;
        var mass = 0.0;
        if (sampling.TopK > 0)
        {
            while (popped < wanted)
            {
                mass += PopInto(ref heap, order, popped++);
            }
            all = mass;
        }
        var keep = popped;
        if (sampling.TopP < 1f)
        {
            var cumulative = 0.0;
            keep = 0;
            while (keep < wanted)
            {
                if (keep == popped)
                {
                    mass += PopInto(ref heap, order, popped++);
                }
                cumulative += _weights[order[n - 1 - keep++]];
                if (cumulative >= sampling.TopP * all)
                {
                    break;
                }
            }
            mass = cumulative;
        }
        var taken = order[(n - keep)..];
        taken.Reverse();
        taken.CopyTo(order);
        kept = mass;
        return keep;
    }

    /// <summary>Moves the heap's best id to position <c>n - 1 - popped</c> and returns its weight.</summary>
    private double PopInto(ref LogitHeap heap, Span<int> order, int popped)
    {
        var id = heap.Pop(order.Length - popped);
        order[order.Length - 1 - popped] = id;
        return _weights[id];
    }

    /// <summary>A max-heap of token ids ordered by logit, ties to the lower id, stored in the id array itself.</summary>
    private ref struct LogitHeap(Span<int> ids, ReadOnlySpan<float> logits)
    {
        private readonly Span<int> _ids = ids;
        private readonly ReadOnlySpan<float> _logits = logits;

        public void Build()
        {
            for (var i = (_ids.Length / 2) - 1; i >= 0; i--)
            {
                SiftDown(i, _ids.Length);
            }
        }

        /// <summary>Removes the best id from a heap of <paramref name="size"/> entries; the freed slot is the last one.</summary>
        public int Pop(int size)
        {
            var top = _ids[0];
            _ids[0] = _ids[size - 1];
            SiftDown(0, size - 1);
            return top;
        }

        private bool Before(int a, int b) => _logits[a] > _logits[b] || (_logits[a] == _logits[b] && a < b);

        private void SiftDown(int i, int size)
        {
            while (true)
            {
                int left = (2 * i) + 1, right = left + 1, best = i;
                if (left < size && Before(_ids[left], _ids[best]))
                {
                    best = left;
                }
                if (right < size && Before(_ids[right], _ids[best]))
                {
                    best = right;
                }
                if (best == i)
                {
                    return;
                }
                (_ids[i], _ids[best]) = (_ids[best], _ids[i]);
                i = best;
            }
        }
    }
}
