using System.Text.RegularExpressions;

namespace RouteReplay.Model.Tokenization;

/// <summary>Cuts raw text around added tokens, leftmost-longest, as Hugging Face <c>tokenizers</c> does before normalizing.</summary>
internal sealed class AddedTokenSplitter
{
    private readonly IReadOnlyDictionary<string, int> _addedTokens;
    private readonly Regex? _anyAddedToken;

    public AddedTokenSplitter(IReadOnlyDictionary<string, int> addedTokens)
    {
        _addedTokens = addedTokens;
        var longestFirst = addedTokens.Keys.Where(token => token.Length > 0).OrderByDescending(token => token.Length).Select(Regex.Escape);
        var pattern = string.Join('|', longestFirst);
        _anyAddedToken = pattern.Length == 0 ? null : new Regex(pattern, RegexOptions.CultureInvariant);
    }

    /// <summary>The pieces of <paramref name="text"/> in order: plain text with a null id, or an added token with its id.</summary>
    public IEnumerable<(string Text, int? AddedTokenId)> Split(string text)
    {
        var position = 0;
        for (var match = _anyAddedToken?.Match(text); match is { Success: true }; match = match.NextMatch())
        {
            if (match.Index > position)
            {
                yield return (text[position..match.Index], null);
            }
            yield return (match.Value, _addedTokens[match.Value]);
            position = match.Index + match.Length;
        }
        if (position < text.Length)
        {
            yield return (text[position..], null);
        }
    }
}
