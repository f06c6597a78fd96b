using BenchmarkDotNet.Attributes;
using RouteReplay.Engine;

namespace RouteReplay.Bench;

/// <summary>
/// One sampled token from a row of the Qwen3 vocabulary (151,936 logits, uniform in [-3, 3)): flat at temperature 30,
/// where top-p 0.9 keeps most of the vocabulary, and peaked (the logits scaled by 8) at temperature 1, where it keeps
/// a few tokens.
/// </summary>
[MemoryDiagnoser]
public class SamplerBenchmarks
{
    private const int Vocabulary = 151_936;

    private readonly Sampler _sampler = new(Vocabulary);
    private float[] _logits = null!;
    private SamplingParams _sampling = null!;
    private SeededRandom _random;

    [Params("flat", "peaked")]
    public string Distribution { get; set; } = "flat";

    [Params(1f, 0.9f)]
    public float TopP { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new SeededRandom(1);
        var scale = Distribution == "flat" ? 1.0 : 8.0;
        _logits = Enumerable.Range(0, Vocabulary).Select(_ => (float)(((random.NextDouble() * 6) - 3) * scale)).ToArray();
        _sampling = new SamplingParams { Temperature = Distribution == "flat" ? 30f : 1f, TopP = TopP, Seed = 7 };
        _random = new SeededRandom(7);
    }

    [Benchmark]
    public int SampleOneToken() => _sampler.Sample(_logits, Vocabulary, _sampling, ref _random);
}
