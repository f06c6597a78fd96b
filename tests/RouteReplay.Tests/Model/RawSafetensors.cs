using System.Buffers.Binary;
using System.Text;

namespace RouteReplay.Tests.Model;

/// <summary>Builds safetensors files byte by byte, so tests can make malformed ones.</summary>
internal static class RawSafetensors
{
    public static byte[] Build(string header, int dataBytes, ulong? headerLengthField = null)
    {
        var headerBytes = Encoding.UTF8.GetBytes(header);
        var file = new byte[8 + headerBytes.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(file, headerLengthField ?? (ulong)headerBytes.Length);
        headerBytes.CopyTo(file, 8);
        for (var i = 0; i < dataBytes; i++)
        {
            file[8 + headerBytes.Length + i] = (byte)i;
        }
        return file;
    }

    public static string Header(string name, string dtype, string shape, long begin, long end) =>
        $$$"""{"{{{name}}}":{"dtype":"{{{dtype}}}","shape":{{{shape}}},"data_offsets":[{{{begin}}},{{{end}}}]}}""";
}
