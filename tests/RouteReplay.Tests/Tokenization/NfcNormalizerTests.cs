using RouteReplay.Model.Tokenization;

namespace RouteReplay.Tests.Tokenization;

public sealed class NfcNormalizerTests
{
    [Fact]
    public void Normalizes_like_python_unicodedata()
    {
        var failures = FixtureFile.Load("nfc_expected.json").EnumerateArray()
            .Select(pair => (Text: pair[0].GetString()!, Expected: pair[1].GetString()!))
            .Where(pair => NfcNormalizer.Normalize(pair.Text) != pair.Expected)
            .Select(pair => $"{Escape(pair.Text)} -> {Escape(NfcNormalizer.Normalize(pair.Text))}, expected {Escape(pair.Expected)}")
            .ToList();

        Assert.True(failures.Count == 0, $"{failures.Count} texts normalized wrongly:\n{string.Join('\n', failures.Take(20))}");
    }

    [Fact]
    public void Quick_check_never_passes_text_that_normalization_changes()
    {
        var wrong = FixtureFile.Load("nfc_expected.json").EnumerateArray()
            .Count(pair => pair[0].GetString() != pair[1].GetString() && NfcNormalizer.IsNormalized(pair[0].GetString()));

        Assert.Equal(0, wrong);
    }

    [Theory]
    [InlineData("plain ASCII")]
    [InlineData("café 你好 🚀")]
    [InlineData("")]
    public void Leaves_normalized_text_alone(string text)
    {
        Assert.True(NfcNormalizer.IsNormalized(text));
        Assert.Same(text, NfcNormalizer.Normalize(text));
    }

    private static string Escape(string text) => string.Concat(text.EnumerateRunes().Select(rune => $"U+{rune.Value:X4} "));
}
