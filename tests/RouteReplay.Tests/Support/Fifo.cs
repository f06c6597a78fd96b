using System.Runtime.InteropServices;

namespace RouteReplay.Tests.Support;

/// <summary>Named pipes in a file's place: opening one to read blocks until a writer comes.</summary>
public static partial class Fifo
{
    /// <summary>Replaces <paramref name="path"/> (if it exists) with a named pipe.</summary>
    public static void Replace(string path)
    {
        File.Delete(path);
        Assert.True(MakeFifo(path, Convert.ToUInt32("644", 8)) == 0, $"mkfifo {path} failed: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>
    /// Opens the pipe to write and closes it, so a reader blocked on it sees an empty file and goes on (a test whose
    /// code under test blocked must not leave a thread or process stuck behind it).
    /// </summary>
    public static void ReleaseReaders(string path)
    {
        var opened = Task.Run(() =>
        {
            using var writer = new FileStream(path, FileMode.Open, FileAccess.Write);
        });
        opened.Wait(TimeSpan.FromSeconds(1));
    }

    [LibraryImport("libc", EntryPoint = "mkfifo", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int MakeFifo(string path, uint mode);
}
