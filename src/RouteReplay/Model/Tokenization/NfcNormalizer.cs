using System.Text;

namespace RouteReplay.Model.Tokenization;

/// <summary>
/// Unicode NFC (canonical decomposition, canonical ordering, canonical composition) over the tables in
/// <see cref="NfcData"/>; needed because <see cref="string.Normalize()"/> does nothing under InvariantGlobalization.
/// </summary>
internal static class NfcNormalizer
{
    private const int HangulSBase = 0xAC00, HangulLBase = 0x1100, HangulVBase = 0x1161, HangulTBase = 0x11A7;
    private const int HangulLCount = 19, HangulVCount = 21, HangulTCount = 28;
    private const int HangulNCount = HangulVCount * HangulTCount, HangulSCount = HangulLCount * HangulNCount;
    private const int NotComposite = -1;

    private static readonly Lazy<Tables> LazyTables = new(Tables.Build);

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
        var syllable = codePoint - HangulSBase;
        if (syllable is >= 0 and < HangulSCount)
        {
            output.Add(HangulLBase + (syllable / HangulNCount));
            output.Add(HangulVBase + (syllable % HangulNCount / HangulTCount));
            if (syllable % HangulTCount != 0)
            {
                output.Add(HangulTBase + (syllable % HangulTCount));
            }
            return;
        }
        if (!LazyTables.Value.Decompositions.TryGetValue(codePoint, out var parts))
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
            if (composite != NotComposite && (lastClass < currentClass || lastClass == 0))
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
        var leading = first - HangulLBase;
        var vowel = second - HangulVBase;
        if (leading is >= 0 and < HangulLCount && vowel is >= 0 and < HangulVCount)
        {
            return HangulSBase + (((leading * HangulVCount) + vowel) * HangulTCount);
        }
        var syllable = first - HangulSBase;
        var trailing = second - HangulTBase;
        if (syllable is >= 0 and < HangulSCount && syllable % HangulTCount == 0 && trailing is > 0 and < HangulTCount)
        {
            return first + trailing;
        }
        return LazyTables.Value.Compositions.TryGetValue(((long)first << 21) | (uint)second, out var composite) ? composite : NotComposite;
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
