using System.Buffers;
using System.Text;

namespace RouteReplay.Model.Tokenization;

/// <summary>
/// Turns generated token ids into text as they arrive, never splitting a UTF-8 character: the bytes of a character
/// that a byte-level token leaves unfinished are held back until a later token completes it. The concatenation of
/// every <see cref="Append"/> result and <see cref="Flush"/> equals <see cref="TextTokenizer.Decode"/> of all the ids.
/// One instance per stream; not thread-safe.
/// </summary>
/// <param name="tokenizer">The tokenizer the ids come from.</param>
/// <param name="skipSpecialTokens">Leave out added tokens marked special, as <see cref="TextTokenizer.Decode"/> does.</param>
public sealed class StreamingDetokenizer(TextTokenizer tokenizer, bool skipSpecialTokens = false)
{
    private readonly TextTokenizer _tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
    private readonly bool _skipSpecialTokens = skipSpecialTokens;
    private byte[] _pending = new byte[16];
    private int _pendingLength;

    /// <summary>Adds one token and returns the text it completes (possibly empty).</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id the tokenizer does not know.</exception>
    public string Append(int tokenId)
    {
        var bytes = _tokenizer.TokenBytes(tokenId);
        if (_skipSpecialTokens && _tokenizer.IsSpecial(tokenId))
        {
            return string.Empty;
        }
        Hold(bytes);
        var complete = CompletePrefixLength(_pending.AsSpan(0, _pendingLength));
        var text = Encoding.UTF8.GetString(_pending, 0, complete);
        Release(complete);
        return text;
    }

    /// <summary>Returns the bytes still held back, an unfinished character as U+FFFD, and starts over empty.</summary>
    public string Flush()
    {
        var text = Encoding.UTF8.GetString(_pending, 0, _pendingLength);
        _pendingLength = 0;
        return text;
    }

    /// <summary>The length of the prefix that decodes the same now as it will whatever bytes follow: all but a trailing unfinished character.</summary>
    private static int CompletePrefixLength(ReadOnlySpan<byte> bytes)
    {
        var consumed = 0;
        while (consumed < bytes.Length)
        {
            var status = Rune.DecodeFromUtf8(bytes[consumed..], out _, out var length);
            if (status == OperationStatus.NeedMoreData)
            {
                break;
            }
            consumed += length;
        }
        return consumed;
    }

    private void Hold(ReadOnlySpan<byte> bytes)
    {
        if (_pendingLength + bytes.Length > _pending.Length)
        {
            Array.Resize(ref _pending, Math.Max(_pending.Length * 2, _pendingLength + bytes.Length));
        }
        bytes.CopyTo(_pending.AsSpan(_pendingLength));
        _pendingLength += bytes.Length;
    }

    private void Release(int count)
    {
        _pending.AsSpan(count, _pendingLength - count).CopyTo(_pending);
        _pendingLength -= count;
    }
}
