using System.Diagnostics;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.Tests.Tokenization;

/// <summary>The shipped Qwen3 tokenizer, loaded once for every test class in <see cref="Qwen3TokenizerCollection"/>.</summary>
public sealed class Qwen3TokenizerFixture
{
    public Qwen3TokenizerFixture()
    {
        var stopwatch = Stopwatch.StartNew();
        Tokenizer = TextTokenizer.Load(Assets.Qwen3TokenizerDirectory);
        LoadTime = stopwatch.Elapsed;
    }

    public TextTokenizer Tokenizer { get; }

    public TimeSpan LoadTime { get; }
}

[CollectionDefinition(Name)]
public sealed class Qwen3TokenizerCollection : ICollectionFixture<Qwen3TokenizerFixture>
{
    public const string Name = "Qwen3 tokenizer";
}
