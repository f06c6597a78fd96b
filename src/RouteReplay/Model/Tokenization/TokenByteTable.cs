using System.Text;

namespace RouteReplay.Model.Tokenization;

/// <summary>
/// The raw bytes every token id decodes to: a BPE token's byte-level characters mapped back through
/// <see cref="ByteLevelAlphabet"/>, an added token's literal UTF-8. Stored flat, one span per id.
/// </summary>
internal sealed class TokenByteTable
{
    private readonly byte[] _bytes;
    private readonly int[] _starts;
    private readonly bool[] _known;
    private readonly bool[] _special;

    private TokenByteTable(byte[] bytes, int[] starts, bool[] known, bool[] special)
    {
        _bytes = bytes;
        _starts = starts;
        _known = known;
        _special = special;
    }

    /// <summary>Max id + 1.</summary>
    public int Count => _special.Length;

    public static TokenByteTable Build(IReadOnlyDictionary<string, int> vocabulary, IReadOnlyList<AddedToken> addedTokens)
    {
        var count = Math.Max(
            vocabulary.Count == 0 ? 0 : vocabulary.Values.Max() + 1,
            addedTokens.Count == 0 ? 0 : addedTokens.Max(token => token.Id) + 1);
        var perId = new byte[]?[count];
        var special = new bool[count];
        foreach (var (token, id) in vocabulary)
        {
            perId[id] = ByteLevelBytes(token);
        }
        foreach (var token in addedTokens)
        {
            perId[token.Id] = Encoding.UTF8.GetBytes(token.Content);
            special[token.Id] = token.Special;
        }
        return Flatten(perId, special);
    }

    public bool Contains(int id) => (uint)id < (uint)Count && _known[id];

    public bool IsSpecial(int id) => _special[id];

    /// <summary>The bytes of a token the table <see cref="Contains"/>.</summary>
    public ReadOnlySpan<byte> this[int id] => _bytes.AsSpan(_starts[id], _starts[id + 1] - _starts[id]);

    /// <summary>Like Hugging Face's ByteLevel decoder: a token with a character outside the alphabet is taken as UTF-8 text.</summary>
    private static byte[] ByteLevelBytes(string token)
    {
        var bytes = new byte[token.Length];
        for (var i = 0; i < token.Length; i++)
        {
            if (!ByteLevelAlphabet.TryToByte(token[i], out bytes[i]))
            {
                return Encoding.UTF8.GetBytes(token);
            }
        }
        return bytes;
    }

    private static TokenByteTable Flatten(byte[]?[] perId, bool[] special)
    {
        var starts = new int[perId.Length + 1];
        var known = new bool[perId.Length];
        var bytes = new byte[perId.Sum(token => token?.Length ?? 0)];
        var offset = 0;
        for (var id = 0; id < perId.Length; id++)
        {
            starts[id] = offset;
            if (perId[id] is { } token)
            {
                known[id] = true;
                token.CopyTo(bytes, offset);
                offset += token.Length;
            }
        }
        starts[perId.Length] = offset;
        return new TokenByteTable(bytes, starts, known, special);
    }
}
