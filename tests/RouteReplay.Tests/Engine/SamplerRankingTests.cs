using CsCheck;
using RouteReplay.Engine;

namespace RouteReplay.Tests.Engine;

/// <summary>
/// <see cref="Sampler"/> orders only the candidates it keeps; every token it draws must equal the one the full-row heap
/// sampler it replaced (<see cref="HeapSamplerReference"/>) draws from the same seed.
/// </summary>
public sealed class SamplerRankingTests
{
    private const int QwenVocabulary = 151_936;

    private static readonly Gen<float[]> Rows = Gen.OneOf(
        Gen.Float[-10f, 10f].Array[1, 300],
        Gen.Float[-0.01f, 0.01f].Array[1, 300],
        Gen.OneOf(-1f, 0f, -0f, 0.5f, 2f).Array[1, 300],
        Gen.OneOf(float.NegativeInfinity, -3f, 0f, 1f, 1f + 1e-7f).Array[1, 300],
        Gen.Select(Gen.Float[-3f, 3f].Array[2, 300], Gen.OneOf(-1e30f, -1e4f, 1e4f, 3e38f), Gen.Int[0, 299],
            (row, outlier, at) =>
            {
                row[at % row.Length] = outlier;
                return row;
            }));

    private static readonly Gen<SamplingParams> Samplings = Gen.Select(
        Gen.OneOf(Gen.Float[0.01f, 100f], Gen.OneOf(1f, 30f, 1e4f)),
        Gen.OneOf(Gen.Float[0.001f, 1f], Gen.OneOf(1f, 0.9f, 0.95f, 0.5f)),
        Gen.OneOf(Gen.Const(0), Gen.Int[1, 40], Gen.Int[250, 400]),
        Gen.ULong,
        (temperature, topP, topK, seed) => new SamplingParams { Temperature = temperature, TopP = topP, TopK = topK, Seed = seed });

    [Fact]
    public void Draws_the_same_tokens_as_the_full_row_heap_sampler_on_any_row()
    {
        Gen.Select(Rows, Samplings, Gen.Int[0, 3]).Sample((row, sampling, cut) =>
        {
            var limit = Math.Max(1, row.Length - cut);
            Assert.Equal(Draw(new HeapSamplerReference(row.Length).Sample, row, limit, sampling, 12), Draw(new Sampler(row.Length).Sample, row, limit, sampling, 12));
        }, iter: 3_000);
    }

    [Theory]
    [InlineData(30f, 0.9f, 0)]
    [InlineData(1f, 0.95f, 0)]
    [InlineData(30f, 1f, 50)]
    [InlineData(30f, 0.9f, 20_000)]
    public void Draws_the_same_tokens_as_the_full_row_heap_sampler_over_the_whole_vocabulary(float temperature, float topP, int topK)
    {
        var random = new SeededRandom(5);
        var row = Enumerable.Range(0, QwenVocabulary).Select(_ => (float)((random.NextDouble() * 6) - 3)).ToArray();
        var sampling = new SamplingParams { Temperature = temperature, TopP = topP, TopK = topK, Seed = 17 };
        Assert.Equal(Draw(new HeapSamplerReference(QwenVocabulary).Sample, row, QwenVocabulary - 100, sampling, 6), Draw(new Sampler(QwenVocabulary).Sample, row, QwenVocabulary - 100, sampling, 6));
    }

    [Fact]
    public void Equal_logits_over_the_whole_vocabulary_go_to_the_lower_ids_first()
    {
        var row = new float[QwenVocabulary];
        var sampling = new SamplingParams { Temperature = 1f, TopP = 0.001f, Seed = 3 };
        var drawn = Draw(new Sampler(QwenVocabulary).Sample, row, QwenVocabulary, sampling, 20);
        Assert.Equal(Draw(new HeapSamplerReference(QwenVocabulary).Sample, row, QwenVocabulary, sampling, 20), drawn);
        Assert.All(drawn, token => Assert.InRange(token, 0, (int)(QwenVocabulary * 0.001) + 1));
    }

    [Fact]
    public void Ranking_hands_out_ids_by_descending_logit_with_ties_to_the_lower_id()
    {
        Gen.Select(Rows, Gen.Int[0, 300]).Sample((row, read) =>
        {
            var ranking = new LogitRanking(row.Length);
            ranking.Start(row, row.Max());
            var count = Math.Min(read, row.Length);
            var expected = Enumerable.Range(0, row.Length).OrderByDescending(id => row[id]).ThenBy(id => id).Take(count);
            Assert.Equal(expected, Enumerable.Range(0, count).Select(_ => ranking.Next()));
        }, iter: 2_000);
    }

    private delegate int SampleOne(ReadOnlySpan<float> logits, int tokenLimit, SamplingParams sampling, ref SeededRandom random);

    private static int[] Draw(SampleOne sample, float[] row, int limit, SamplingParams sampling, int count)
    {
        var random = new SeededRandom(sampling.Seed!.Value);
        var tokens = new int[count];
        for (var i = 0; i < count; i++)
        {
            tokens[i] = sample(row, limit, sampling, ref random);
        }
        return tokens;
    }
}
