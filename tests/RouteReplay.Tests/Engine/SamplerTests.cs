using RouteReplay.Engine;

namespace RouteReplay.Tests.Engine;

public sealed class SamplerTests
{
    private static float[] Logits(int n, ulong seed)
    {
        var random = new SeededRandom(seed);
        return Enumerable.Range(0, n).Select(_ => (float)((random.NextDouble() * 6) - 3)).ToArray();
    }

    private static int[] Draw(float[] logits, SamplingParams sampling, int count, int limit)
    {
        var sampler = new Sampler(logits.Length);
        var random = SeededRandom.FromSeedOrEntropy(sampling.Seed);
        return Enumerable.Range(0, count).Select(_ => sampler.Sample(logits, limit, sampling, ref random)).ToArray();
    }

    [Fact]
    public void The_same_seed_gives_the_same_tokens_and_another_seed_differs()
    {
        var logits = Logits(1000, 1);
        var a = Draw(logits, new SamplingParams { Temperature = 1f, Seed = 42 }, 50, 1000);
        var b = Draw(logits, new SamplingParams { Temperature = 1f, Seed = 42 }, 50, 1000);
        var c = Draw(logits, new SamplingParams { Temperature = 1f, Seed = 43 }, 50, 1000);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void Greedy_takes_the_first_maximum()
    {
        float[] logits = [1f, 5f, 2f, 5f];
        Assert.Equal(1, Draw(logits, new SamplingParams { Temperature = 0f }, 1, 4)[0]);
    }

    [Fact]
    public void Ids_past_the_token_limit_are_never_sampled()
    {
        var logits = Logits(200, 2);
        for (var i = 150; i < 200; i++)
        {
            logits[i] = 100f;
        }
        Assert.All(Draw(logits, new SamplingParams { Temperature = 1f, Seed = 1 }, 200, 150), t => Assert.InRange(t, 0, 149));
        Assert.InRange(Draw(logits, new SamplingParams { Temperature = 0f }, 1, 150)[0], 0, 149);
    }

    [Fact]
    public void Top_k_keeps_only_the_k_most_likely()
    {
        var logits = Logits(500, 3);
        var top3 = logits.Select((v, i) => (v, i)).OrderByDescending(x => x.v).Take(3).Select(x => x.i).ToHashSet();
        var drawn = Draw(logits, new SamplingParams { Temperature = 2f, TopK = 3, Seed = 9 }, 300, 500);
        Assert.All(drawn, t => Assert.Contains(t, top3));
        Assert.Equal(3, drawn.Distinct().Count());
    }

    [Fact]
    public void Top_p_keeps_the_smallest_set_reaching_the_mass()
    {
        float[] logits = [MathF.Log(0.5f), MathF.Log(0.3f), MathF.Log(0.15f), MathF.Log(0.05f)];
        var drawn = Draw(logits, new SamplingParams { Temperature = 1f, TopP = 0.75f, Seed = 5 }, 400, 4);
        Assert.Equal(new[] { 0, 1 }, drawn.Distinct().Order().ToArray());
    }

    [Theory]
    [InlineData(-1f, 1f, 0, 1, "temperature")]
    [InlineData(1f, 0f, 0, 1, "top_p")]
    [InlineData(1f, 1.5f, 0, 1, "top_p")]
    [InlineData(1f, 1f, -2, 1, "top_k")]
    [InlineData(1f, 1f, 0, 0, "max_tokens")]
    public void Invalid_parameters_name_the_field(float temperature, float topP, int topK, int maxTokens, string field)
    {
        var sampling = new SamplingParams { Temperature = temperature, TopP = topP, TopK = topK, MaxTokens = maxTokens };
        var error = Assert.Throws<ArgumentException>(sampling.Validate);
        Assert.Equal(field, error.ParamName);
    }
}
