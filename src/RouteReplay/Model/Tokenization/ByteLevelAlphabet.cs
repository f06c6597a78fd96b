namespace RouteReplay.Model.Tokenization;

/// <summary>
/// The GPT-2 byte-to-unicode table byte-level BPE vocabularies are written in: every byte is one printable
/// character (printable ASCII and Latin-1 bytes stand for themselves, the rest are shifted to U+0100 and up).
/// </summary>
internal static class ByteLevelAlphabet
{
    private const int NoByte = -1;

    private static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly short[] CharToByte = BuildCharToByte();

    /// <summary>The character that stands for <paramref name="value"/>.</summary>
    public static char ToChar(byte value) => ByteToChar[value];

    /// <summary>The byte <paramref name="symbol"/> stands for, or false when it is not in the alphabet.</summary>
    public static bool TryToByte(char symbol, out byte value)
    {
        var mapped = symbol < CharToByte.Length ? CharToByte[symbol] : NoByte;
        value = (byte)mapped;
        return mapped != NoByte;
    }

    private static char[] BuildByteToChar()
    {
        var table = new char[256];
        var shifted = 0;
        for (var b = 0; b < 256; b++)
        {
            table[b] = StandsForItself(b) ? (char)b : (char)(256 + shifted++);
        }
        return table;
    }

    private static short[] BuildCharToByte()
    {
        var table = new short[256 + 256];
        Array.Fill(table, (short)NoByte);
        for (var b = 0; b < 256; b++)
        {
            table[ByteToChar[b]] = (short)b;
        }
        return table;
    }

    private static bool StandsForItself(int b) => b is (>= '!' and <= '~') or (>= 0xA1 and <= 0xAC) or (>= 0xAE and <= 0xFF);
}
