using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace RouteReplay.Model.Tokenization;

/// <summary>
/// Hugging Face <c>Split</c> pre-tokenizers with the <c>Isolated</c> behavior, one (Qwen's) or a <c>Sequence</c> of them
/// (DeepSeek-V3's: digit runs, then CJK runs, then its word regex): each regex in turn cuts every piece the steps before
/// it left, its matches and the text between them each becoming a piece (nothing is dropped), and sees only that piece
/// (a lookahead stops at its end). Added tokens are cut out of the text first and stay whole.
/// </summary>
internal sealed class SequentialSplitPreTokenizer : PreTokenizer
{
    private readonly IReadOnlyList<Regex> _splits;
    private readonly Regex? _addedTokens;

    public SequentialSplitPreTokenizer(IReadOnlyList<Regex> splits, IReadOnlyDictionary<string, int> addedTokens)
    {
        _splits = splits;
        _addedTokens = addedTokens.Count == 0
            ? null
            : new Regex(string.Join('|', addedTokens.Keys.OrderByDescending(token => token.Length).Select(Regex.Escape)), RegexOptions.CultureInvariant);
    }

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) =>
        text is null ? [] : PreTokenize(text.AsSpan());

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text)
    {
        var pieces = new List<(int Offset, int Length)>();
        var start = 0;
        if (_addedTokens is not null)
        {
            foreach (var match in _addedTokens.EnumerateMatches(text))
            {
                Split(text, start, match.Index - start, 0, pieces);
                pieces.Add((match.Index, match.Length));
                start = match.Index + match.Length;
            }
        }
        Split(text, start, text.Length - start, 0, pieces);
        return pieces;
    }

    /// <summary>Cuts text[offset, offset + length) with split <paramref name="step"/> and the steps after it, in order.</summary>
    private void Split(ReadOnlySpan<char> text, int offset, int length, int step, List<(int Offset, int Length)> pieces)
    {
        if (length == 0)
        {
            return;
        }
        if (step == _splits.Count)
        {
            pieces.Add((offset, length));
            return;
        }
        var piece = text.Slice(offset, length);
        var end = 0;
        foreach (var match in _splits[step].EnumerateMatches(piece))
        {
            if (match.Length == 0)
            {
                continue;
            }
            Split(text, offset + end, match.Index - end, step + 1, pieces);
            Split(text, offset + match.Index, match.Length, step + 1, pieces);
            end = match.Index + match.Length;
        }
        Split(text, offset + end, length - end, step + 1, pieces);
    }
}
