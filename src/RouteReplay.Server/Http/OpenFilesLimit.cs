using System.Runtime.InteropServices;

namespace RouteReplay.Server.Http;

/// <summary>The process's open-files limit (<c>RLIMIT_NOFILE</c>, what <c>ulimit -n</c> sets) and the files it has open.</summary>
internal static partial class OpenFilesLimit
{
    /// <summary>The most a soft limit is raised to, whatever the hard limit (a larger one only costs the kernel table space).</summary>
    private const ulong MostUseful = 1 << 20;

    /// <summary>macOS refuses a soft limit above <c>OPEN_MAX</c> unless raised system-wide.</summary>
    private const ulong MacOpenMax = 10_240;

    private const int LinuxNoFile = 7;
    private const int MacNoFile = 8;

    /// <summary>
    /// Raises the soft limit to the hard limit (at most <see cref="MostUseful"/>) and returns the soft limit in force
    /// afterwards with the one before; null where the system has no such limit (Windows) or libc does not answer.
    /// </summary>
    public static (long Before, long Now)? RaiseSoftLimit()
    {
        var resource = OperatingSystem.IsLinux() ? LinuxNoFile : OperatingSystem.IsMacOS() ? MacNoFile : 0;
        if (resource == 0)
        {
            return null;
        }
        try
        {
            if (GetLimit(resource, out var limit) != 0)
            {
                return null;
            }
            var before = limit.Current;
            var wanted = Math.Min(limit.Maximum, OperatingSystem.IsMacOS() ? MacOpenMax : MostUseful);
            if (wanted > limit.Current && SetLimit(resource, limit with { Current = wanted }) == 0)
            {
                limit = limit with { Current = wanted };
            }
            return (Clamp(before), Clamp(limit.Current));
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    /// <summary>The file descriptors the process has open now (<c>/proc/self/fd</c> or <c>/dev/fd</c>), or null where neither lists them.</summary>
    public static int? OpenNow()
    {
        foreach (var folder in new[] { "/proc/self/fd", "/dev/fd" })
        {
            try
            {
                return Directory.EnumerateFileSystemEntries(folder).Count();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }
        return null;
    }

    private static long Clamp(ulong value) => (long)Math.Min(value, long.MaxValue);

    [StructLayout(LayoutKind.Sequential)]
    private record struct RLimit(ulong Current, ulong Maximum);

    [LibraryImport("libc", EntryPoint = "getrlimit", SetLastError = true)]
    private static partial int GetLimit(int resource, out RLimit limit);

    [LibraryImport("libc", EntryPoint = "setrlimit", SetLastError = true)]
    private static partial int SetLimit(int resource, in RLimit limit);
}
