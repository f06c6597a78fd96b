using RouteReplay.Backends.Cpu;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;

namespace RouteReplay.Tests.Families;

/// <summary>
/// Each router rule against a brute-force statement of it: every k-subset of the eligible experts is scored and the
/// best one (by selection score, ties to the lower ids) must be the one chosen, in descending order.
/// </summary>
public sealed class ExpertRouterTests
{
    [Fact]
    public void Softmax_router_chooses_the_top_probabilities_and_renormalises_when_asked()
    {
        var config = Config(RouterSpec.Softmax, experts: 6, k: 2, norm: true);
        var router = new ExpertRouter(config);
        float[] logits = [0.5f, 2f, -1f, 1.5f, 2f, 0f];
        var scores = (float[])logits.Clone();
        var selection = router.Score(scores, []).ToArray();
        Span<int> selected = stackalloc int[2];
        router.Select(selected);
        Assert.Equal([1, 4], selected.ToArray());
        Assert.Equal(selection, scores);
        Span<float> weights = stackalloc float[2];
        router.Weigh(scores, selected, weights);
        Assert.Equal(0.5f, weights[0], 6);
        Assert.Equal(0.5f, weights[1], 6);
    }

    [Fact]
    public void Softmax_over_selected_equals_a_softmax_of_the_k_logits()
    {
        var router = new ExpertRouter(Config(new RouterSpec(RouterScoring.SoftmaxOverSelected), experts: 8, k: 2, norm: false));
        float[] logits = [0.1f, 3f, 0.2f, -4f, 2f, 0.3f, 0.4f, 1f];
        var scores = (float[])logits.Clone();
        router.Score(scores, []);
        Span<int> selected = stackalloc int[2];
        router.Select(selected);
        Assert.Equal([1, 4], selected.ToArray());
        Span<float> weights = stackalloc float[2];
        router.Weigh(scores, selected, weights);
        var expected = 1 / (1 + Math.Exp(2f - 3f));
        Assert.Equal(expected, weights[0], 6);
        Assert.Equal(1 - expected, weights[1], 6);
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(4, 2, 1)]
    [InlineData(4, 2, 2)]
    [InlineData(8, 4, 3)]
    [InlineData(2, 1, 5)]
    public void Sigmoid_router_with_correction_bias_and_group_limit_matches_brute_force(int groups, int topkGroups, int seed)
    {
        const int experts = 16, k = 4;
        var spec = new RouterSpec(RouterScoring.Sigmoid, CorrectionBias: true, ExpertGroups: groups, TopKGroups: topkGroups, ScalingFactor: 2.5);
        var router = new ExpertRouter(Config(spec, experts, k, norm: true));
        var random = new Random(seed);
        for (var trial = 0; trial < 200; trial++)
        {
            var logits = Enumerable.Range(0, experts).Select(_ => (float)Math.Round(random.NextDouble() * 6 - 3, trial % 2 == 0 ? 1 : 6)).ToArray();
            var bias = Enumerable.Range(0, experts).Select(_ => (float)Math.Round(random.NextDouble() - 0.5, 2)).ToArray();
            var scores = (float[])logits.Clone();
            router.Score(scores, bias);
            var selected = new int[k];
            router.Select(selected);

            var sigmoid = logits.Select(x => 1f / (1f + MathF.Exp(-x))).ToArray();
            var choice = sigmoid.Select((s, e) => s + bias[e]).ToArray();
            Assert.Equal(sigmoid, scores);
            Assert.Equal(BruteForce(choice, groups, topkGroups, k), selected);

            var weights = new float[k];
            router.Weigh(scores, selected, weights);
            var total = 0f;
            foreach (var e in selected)
            {
                total += sigmoid[e];
            }
            total += 1e-20f;
            Assert.Equal(selected.Select(e => sigmoid[e] / total * 2.5f).ToArray(), weights);
        }
    }

    [Fact]
    public void Ties_go_to_the_lower_expert_and_the_lower_group()
    {
        var spec = new RouterSpec(RouterScoring.Sigmoid, CorrectionBias: true, ExpertGroups: 4, TopKGroups: 2);
        var router = new ExpertRouter(Config(spec, experts: 8, k: 2, norm: false));
        var scores = new float[8];
        router.Score(scores, new float[8]);
        var selected = new int[2];
        router.Select(selected);
        Assert.Equal([0, 1], selected);
    }

    /// <summary>The eligible groups by value (sum of the two best), ties to the lower group; then the best k-subset.</summary>
    private static int[] BruteForce(float[] choice, int groups, int topkGroups, int k)
    {
        var size = choice.Length / groups;
        var groupValue = Enumerable.Range(0, groups)
            .Select(g => choice.Skip(g * size).Take(size).OrderByDescending(x => x).Take(Math.Min(2, size)).Sum())
            .ToArray();
        var eligibleGroups = Enumerable.Range(0, groups).OrderByDescending(g => groupValue[g]).ThenBy(g => g).Take(topkGroups).ToHashSet();
        return Enumerable.Range(0, choice.Length)
            .Where(e => eligibleGroups.Contains(e / size))
            .OrderByDescending(e => choice[e])
            .ThenBy(e => e)
            .Take(k)
            .ToArray();
    }

    private static ModelConfig Config(RouterSpec spec, int experts, int k, bool norm) =>
        ModelPresets.Get("tiny").Config with { Router = spec, NumExperts = experts, NumExpertsPerTok = k, NormTopkProb = norm };
}
