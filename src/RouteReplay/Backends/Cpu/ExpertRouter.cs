using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Backends.Cpu;

/// <summary>
/// One token's routing decision under a <see cref="RouterSpec"/>: scores from the router logits, the eligible experts
/// (group limit), the top-k by selection score in descending order (ties to the lower id), and the gate weights.
/// Replay skips the selection and weighs the forced experts the same way.
/// </summary>
internal sealed class ExpertRouter
{
    private readonly RouterSpec _spec;
    private readonly bool _normTopkProb;
    private readonly float[] _selection;
    private readonly float[] _groupValues;
    private readonly int[] _chosenGroups;

    public ExpertRouter(ModelConfig config)
    {
        _spec = config.Router;
        _normTopkProb = config.NormTopkProb;
        _selection = new float[config.NumExperts];
        _groupValues = new float[Math.Max(1, _spec.ExpertGroups)];
        _chosenGroups = new int[Math.Max(1, _spec.TopKGroups)];
    }

    /// <summary>
    /// Turns <paramref name="logits"/> into the scores the gate weights are taken from, in place, and returns the
    /// selection scores (the scores plus <paramref name="correctionBias"/>, when the router has one). The returned span
    /// is this router's buffer, valid until the next call.
    /// </summary>
    public ReadOnlySpan<float> Score(Span<float> logits, ReadOnlySpan<float> correctionBias)
    {
        switch (_spec.Scoring)
        {
            case RouterScoring.Softmax:
                Kernels.Softmax(logits);
                break;
            case RouterScoring.Sigmoid:
                foreach (ref var x in logits)
                {
                    x = 1f / (1f + MathF.Exp(-x));
                }
                break;
            case RouterScoring.SoftmaxOverSelected:
                break;
            default:
                throw new InvalidOperationException($"unknown router scoring {_spec.Scoring}");
        }
        var selection = _selection.AsSpan(0, logits.Length);
        logits.CopyTo(selection);
        if (_spec.CorrectionBias)
        {
            for (var e = 0; e < selection.Length; e++)
            {
                selection[e] += correctionBias[e];
            }
        }
        return selection;
    }

    /// <summary>
    /// Chooses <paramref name="selected"/>.Length experts from the selection scores <see cref="Score"/> returned:
    /// only experts of the best <see cref="RouterSpec.TopKGroups"/> groups are eligible.
    /// </summary>
    public void Select(Span<int> selected)
    {
        var selection = _selection.AsSpan();
        if (_spec.ExpertGroups > 1 && _spec.TopKGroups < _spec.ExpertGroups)
        {
            MaskGroups(selection);
        }
        SelectTopK(selection, selected);
    }

    /// <summary>The gate weights of <paramref name="selected"/> from the scores <see cref="Score"/> left in <paramref name="scores"/>.</summary>
    public void Weigh(ReadOnlySpan<float> scores, ReadOnlySpan<int> selected, Span<float> weights)
    {
        if (_spec.Scoring == RouterScoring.SoftmaxOverSelected)
        {
            for (var j = 0; j < selected.Length; j++)
            {
                weights[j] = scores[selected[j]];
            }
            Kernels.Softmax(weights);
        }
        else
        {
            var total = 0f;
            for (var j = 0; j < selected.Length; j++)
            {
                weights[j] = scores[selected[j]];
                total += weights[j];
            }
            if (_normTopkProb && _spec.Scoring == RouterScoring.Sigmoid)
            {
                total += 1e-20f;
                for (var j = 0; j < weights.Length; j++)
                {
                    weights[j] /= total;
                }
            }
            else if (_normTopkProb && total > 0)
            {
                for (var j = 0; j < weights.Length; j++)
                {
                    weights[j] /= total;
                }
            }
        }
        if (_spec.ScalingFactor != 1.0)
        {
            var factor = (float)_spec.ScalingFactor;
            for (var j = 0; j < weights.Length; j++)
            {
                weights[j] *= factor;
            }
        }
    }

    /// <summary>The k largest scores in descending order; a tie goes to the lower id.</summary>
    internal static void SelectTopK(ReadOnlySpan<float> scores, Span<int> selected)
    {
        for (var j = 0; j < selected.Length; j++)
        {
            var best = -1;
            for (var e = 0; e < scores.Length; e++)
            {
                if (selected[..j].Contains(e))
                {
                    continue;
                }
                if (best < 0 || scores[e] > scores[best])
                {
                    best = e;
                }
            }
            selected[j] = best;
        }
    }

    /// <summary>
    /// A group's value is the sum of its two best selection scores (its one score when a group has one expert); the
    /// experts of every group outside the best <see cref="RouterSpec.TopKGroups"/> become ineligible (-inf).
    /// </summary>
    private void MaskGroups(Span<float> selection)
    {
        var groups = _spec.ExpertGroups;
        var size = selection.Length / groups;
        for (var g = 0; g < groups; g++)
        {
            var group = selection.Slice(g * size, size);
            float first = float.NegativeInfinity, second = float.NegativeInfinity;
            foreach (var x in group)
            {
                if (x > first)
                {
                    second = first;
                    first = x;
                }
                else if (x > second)
                {
                    second = x;
                }
            }
            _groupValues[g] = size > 1 ? first + second : first;
        }
        SelectTopK(_groupValues, _chosenGroups);
        for (var g = 0; g < groups; g++)
        {
            if (!_chosenGroups.AsSpan().Contains(g))
            {
                selection.Slice(g * size, size).Fill(float.NegativeInfinity);
            }
        }
    }
}
