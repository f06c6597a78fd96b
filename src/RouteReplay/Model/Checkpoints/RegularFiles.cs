using System.Runtime.InteropServices;

namespace RouteReplay.Model.Checkpoints;

/// <summary>
/// Opens the files of a model folder only when they are regular files: a FIFO, a device or a socket in a file's place
/// (a named pipe as <c>config.json</c>) would block its reader or never end. Whole-file reads are bounded.
/// </summary>
public static partial class RegularFiles
{
    /// <summary>The largest JSON file of a model folder read whole (configs, the weight index, tokenizer files).</summary>
    public const long MaxJsonFileBytes = 256L << 20;

    private const int AtFdCwd = -100;
    private const uint StatxType = 0x1;
    private const int StatxModeOffset = 28;
    private const int StatxBufferBytes = 256;

    /// <summary>Opens <paramref name="path"/> for reading, once it is known to be a regular file.</summary>
    /// <exception cref="IOException">The path is not a regular file (the message says what it is), or cannot be opened.</exception>
    /// <exception cref="UnauthorizedAccessException">The file may not be read.</exception>
    public static FileStream OpenRead(string path, FileOptions options = FileOptions.None)
    {
        if (NonRegularKind(path) is { } kind)
        {
            throw new IOException($"it is {kind}, not a regular file");
        }
        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, options);
    }

    /// <summary>The bytes of the regular file <paramref name="path"/>, when it holds at most <paramref name="maxBytes"/>.</summary>
    /// <exception cref="IOException">Not a regular file, larger than the limit, or unreadable.</exception>
    /// <exception cref="UnauthorizedAccessException">The file may not be read.</exception>
    public static byte[] ReadAllBytes(string path, long maxBytes)
    {
        using var stream = OpenRead(path, FileOptions.SequentialScan);
        if (stream.Length > maxBytes)
        {
            throw new IOException($"it is {stream.Length} bytes, more than the limit of {maxBytes}");
        }
        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        return bytes;
    }

    /// <summary>What <paramref name="path"/> is when it exists and is neither a regular file nor a link to one (null otherwise, or where the kind cannot be told).</summary>
    internal static unsafe string? NonRegularKind(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }
        var buffer = stackalloc byte[StatxBufferBytes];
        try
        {
            if (Statx(AtFdCwd, path, 0, StatxType, buffer) != 0)
            {
                return null;
            }
        }
        catch (EntryPointNotFoundException)
        {
            return null;
        }
        var mode = *(ushort*)(buffer + StatxModeOffset);
        return (mode & 0xF000) switch
        {
            0x8000 => null,
            0x1000 => "a FIFO (named pipe)",
            0x2000 => "a character device",
            0x4000 => "a folder",
            0x6000 => "a block device",
            0xC000 => "a socket",
            _ => "a special file",
        };
    }

    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int directory, string path, int flags, uint mask, byte* buffer);
}
