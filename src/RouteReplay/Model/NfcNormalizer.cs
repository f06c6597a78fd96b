using System.Text;

namespace RouteReplay.Model;

/// <summary>
/// Unicode NFC (canonical decomposition, canonical ordering, canonical composition) over the tables in
/// <see cref="NfcData"/>; needed because <see cref="string.Normalize()"/> does nothing under InvariantGlobalization.
/// </summary>
internal static class NfcNormalizer
{
    private const int _hangulSBase = 0xAC00, _hangulLBase = 0x1100, _hangulVBase = 0x1161, _hangulTBase = 0x11A7;
    private const int _hangulLCount = 19, _hangulVCount = 21, _hangulTCount = 28;
    private const int _hangulNCount = _hangulVCount * _hangulTCount, _hangulSCount = _hangulLCount * _hangulNCount;
    private const int _notComposite = -1;

    private static readonly Lazy<Tables> _tables = new(Tables.Build);

    /// <summary>Whether NFC leaves the text as it is (the quick check: no character that NFC may reorder, change or combine).</summary>
    public static bool IsNormalized(ReadOnlySpan<char> text)
    {
        foreach (var rune in text.EnumerateRunes())
        {
            if (rune.Value >= 0x0300 && InRanges(NfcData.MaybeChangedRanges, 2, rune.Value))
            {
                return false;
            }
        }
        return true;
    }

    public static string Normalize(string text)
    {
        if (IsNormalized(text))
        {
            return text;
        }
        var codePoints = Decompose(text);
        SortCombiningMarks(codePoints);
        Compose(codePoints);
        var result = new StringBuilder(text.Length);
        foreach (var codePoint in codePoints)
        {
            result.Append(new Rune(codePoint).ToString());
        }
        return result.ToString();
    }

    private static List<int> Decompose(string text)
    {
        var codePoints = new List<int>(text.Length + 8);
        foreach (var rune in text.EnumerateRunes())
        {
            AppendDecomposition(codePoints, rune.Value);
        }
        return codePoints;
    }

    private static void AppendDecomposition(List<int> output, int codePoint)
    {
        var syllable = codePoint - _hangulSBase;
        if (syllable is >= 0 and < _hangulSCount)
        {
            output.Add(_hangulLBase + (syllable / _hangulNCount));
            output.Add(_hangulVBase + (syllable % _hangulNCount / _hangulTCount));
            if (syllable % _hangulTCount != 0)
            {
                output.Add(_hangulTBase + (syllable % _hangulTCount));
            }
            return;
        }
        if (!_tables.Value.Decompositions.TryGetValue(codePoint, out var parts))
        {
            output.Add(codePoint);
            return;
        }
        AppendDecomposition(output, parts.First);
        if (parts.Second >= 0)
        {
            AppendDecomposition(output, parts.Second);
        }
    }

    /// <summary>Canonical ordering: a stable sort by combining class of every run of non-starters.</summary>
    private static void SortCombiningMarks(List<int> codePoints)
    {
        for (var i = 1; i < codePoints.Count; i++)
        {
            var current = codePoints[i];
            var currentClass = CombiningClass(current);
            if (currentClass == 0)
            {
                continue;
            }
            var j = i;
            for (; j > 0 && CombiningClass(codePoints[j - 1]) > currentClass; j--)
            {
                codePoints[j] = codePoints[j - 1];
            }
            codePoints[j] = current;
        }
    }

    /// <summary>Canonical composition: each character joins the last starter when nothing between them blocks it.</summary>
    private static void Compose(List<int> codePoints)
    {
        if (codePoints.Count == 0)
        {
            return;
        }
        var starterAt = 0;
        var lastClass = CombiningClass(codePoints[0]) == 0 ? 0 : 256;
        var written = 1;
        for (var read = 1; read < codePoints.Count; read++)
        {
            var current = codePoints[read];
            var currentClass = CombiningClass(current);
            var composite = Composite(codePoints[starterAt], current);
            if (composite != _notComposite && (lastClass < currentClass || lastClass == 0))
            {
                codePoints[starterAt] = composite;
                continue;
            }
            if (currentClass == 0)
            {
                starterAt = written;
            }
            lastClass = currentClass;
            codePoints[written++] = current;
        }
        codePoints.RemoveRange(written, codePoints.Count - written);
    }

    private static int Composite(int first, int second)
    {
        var leading = first - _hangulLBase;
        var vowel = second - _hangulVBase;
        if (leading is >= 0 and < _hangulLCount && vowel is >= 0 and < _hangulVCount)
        {
            return _hangulSBase + (((leading * _hangulVCount) + vowel) * _hangulTCount);
        }
        var syllable = first - _hangulSBase;
        var trailing = second - _hangulTBase;
        if (syllable is >= 0 and < _hangulSCount && syllable % _hangulTCount == 0 && trailing is > 0 and < _hangulTCount)
        {
            return first + trailing;
        }
        return _tables.Value.Compositions.TryGetValue(((long)first << 21) | (uint)second, out var composite) ? composite : _notComposite;
    }

    private static int CombiningClass(int codePoint) =>
        codePoint < 0x0300 ? 0 : ClassInRanges(NfcData.CombiningClassRanges, codePoint);

    private static int ClassInRanges(ReadOnlySpan<int> triples, int codePoint)
    {
        var index = RangeIndex(triples, 3, codePoint);
        return index < 0 ? 0 : triples[(index * 3) + 2];
    }

    private static bool InRanges(ReadOnlySpan<int> ranges, int stride, int codePoint) => RangeIndex(ranges, stride, codePoint) >= 0;

    /// <summary>Binary search over sorted (first, last, ...) rows of <paramref name="stride"/> ints; -1 when no row holds the code point.</summary>
    private static int RangeIndex(ReadOnlySpan<int> rows, int stride, int codePoint)
    {
        int low = 0, high = (rows.Length / stride) - 1;
        while (low <= high)
        {
            var middle = (low + high) / 2;
            if (codePoint < rows[middle * stride])
            {
                high = middle - 1;
            }
            else if (codePoint > rows[(middle * stride) + 1])
            {
                low = middle + 1;
            }
            else
            {
                return middle;
            }
        }
        return -1;
    }

    private sealed record Tables(Dictionary<int, (int First, int Second)> Decompositions, Dictionary<long, int> Compositions)
    {
        public static Tables Build()
        {
            var decompositions = new Dictionary<int, (int, int)>();
            var rows = NfcData.Decompositions;
            for (var i = 0; i < rows.Length; i += 3)
            {
                decompositions[rows[i]] = (rows[i + 1], rows[i + 2]);
            }
            var compositions = new Dictionary<long, int>();
            rows = NfcData.Compositions;
            for (var i = 0; i < rows.Length; i += 3)
            {
                compositions[((long)rows[i] << 21) | (uint)rows[i + 1]] = rows[i + 2];
            }
            return new Tables(decompositions, compositions);
        }
    }
}
