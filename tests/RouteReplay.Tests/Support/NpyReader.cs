using System.Text;
using System.Text.RegularExpressions;

namespace RouteReplay.Tests.Support;

/// <summary>A strict reader of NumPy format 1.0 files, independent of the writer under test.</summary>
public static partial class NpyReader
{
    public sealed record Array(string Descriptor, int[] Shape, byte[] Data);

    public static Array Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(0x93, bytes[0]);
        Assert.Equal("NUMPY", Encoding.ASCII.GetString(bytes, 1, 5));
        Assert.Equal(1, bytes[6]);
        var headerLength = bytes[8] | (bytes[9] << 8);
        Assert.Equal(0, (10 + headerLength) % 64);
        var header = Encoding.ASCII.GetString(bytes, 10, headerLength);
        Assert.EndsWith("\n", header);
        var match = HeaderPattern().Match(header);
        Assert.True(match.Success, $"unexpected header: {header}");
        var shape = match.Groups["shape"].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
        return new Array(match.Groups["descr"].Value, shape, bytes[(10 + headerLength)..]);
    }

    [GeneratedRegex(@"^\{'descr': '(?<descr>[^']+)', 'fortran_order': False, 'shape': \((?<shape>[0-9, ]*)\), \}\s*$")]
    private static partial Regex HeaderPattern();
}
