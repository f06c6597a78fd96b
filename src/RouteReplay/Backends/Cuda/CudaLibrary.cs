using System.Runtime.InteropServices;

namespace RouteReplay.Backends.Cuda;

/// <summary>What loading the native library needs from the operating system; tests substitute it.</summary>
internal interface INativeLoader
{
    string BaseDirectory { get; }

    string? GetEnvironmentVariable(string name);

    bool FileExists(string path);

    /// <summary>Loads a library by path or name; on failure <paramref name="error"/> is the loader's one-line reason.</summary>
    bool TryLoad(string pathOrName, out nint handle, out string error);
}

/// <summary>
/// Finds and loads <c>libroutereplay_cuda.so</c> once per process and resolves the backend's imports to it, after
/// checking, in order, that the NVIDIA driver is installed, that the library exists and loads (its CUDA runtime and
/// cuBLAS dependencies included), that it speaks this program's ABI and that the runtime sees a usable GPU. Each
/// missing piece is reported as one line naming it (<see cref="CudaUnavailableException"/>).
/// </summary>
internal static class CudaLibrary
{
    public const string FileName = "libroutereplay_cuda.so";
    public const string PathVariable = "ROUTEREPLAY_CUDA_LIBRARY";
    public const string DriverLibrary = "libcuda.so.1";

    private static readonly Lock Gate = new();
    private static nint _handle;
    private static string? _failure;
    private static bool _resolverSet;

    public static void EnsureLoaded()
    {
        lock (Gate)
        {
            if (_handle != 0)
            {
                return;
            }
            if (_failure is null)
            {
                _failure = Problem(new SystemLoader(), CheckLoadedLibrary, out var handle);
                if (_failure is null)
                {
                    _handle = handle;
                    return;
                }
            }
            throw new CudaUnavailableException(_failure);
        }
    }

    /// <summary>The first missing piece as a one-line message, or null with the loaded library's handle.</summary>
    internal static string? Problem(INativeLoader loader, Func<nint, string?> checkLoaded, out nint handle)
    {
        handle = 0;
        if (!loader.TryLoad(DriverLibrary, out _, out _))
        {
            return $"--device cuda needs the NVIDIA driver, but {DriverLibrary} is not installed on this machine (use --device cpu)";
        }
        var configured = loader.GetEnvironmentVariable(PathVariable);
        string path;
        if (!string.IsNullOrEmpty(configured))
        {
            if (!loader.FileExists(configured))
            {
                return $"--device cuda: {PathVariable} names {configured}, which does not exist; build the native library with native/build.sh";
            }
            path = configured;
        }
        else
        {
            var candidates = Candidates(loader.BaseDirectory).ToArray();
            var found = candidates.FirstOrDefault(loader.FileExists);
            if (found is null)
            {
                if (!loader.TryLoad(FileName, out handle, out _))
                {
                    return $"--device cuda needs the native library {FileName}, which was not found (looked in {string.Join(", ", candidates.Select(Path.GetDirectoryName))} and the loader's path); " +
                        $"build it with native/build.sh or set {PathVariable}";
                }
                return checkLoaded(handle);
            }
            path = found;
        }
        if (!loader.TryLoad(path, out handle, out var error))
        {
            return $"--device cuda could not load {path}: {error} (it needs the CUDA runtime and cuBLAS it was built with)";
        }
        return checkLoaded(handle);
    }

    /// <summary>Next to the program, then native/build of any folder above it (a source checkout).</summary>
    internal static IEnumerable<string> Candidates(string baseDirectory)
    {
        yield return Path.Combine(baseDirectory, FileName);
        var directory = new DirectoryInfo(baseDirectory);
        for (var depth = 0; depth < 8 && directory is not null; depth++, directory = directory.Parent)
        {
            yield return Path.Combine(directory.FullName, "native", "build", FileName);
        }
    }

    private static string? CheckLoadedLibrary(nint handle)
    {
        _handle = handle;
        if (!_resolverSet)
        {
            NativeLibrary.SetDllImportResolver(typeof(CudaLibrary).Assembly, (name, _, _) => name == CudaNative.LibraryName ? _handle : 0);
            _resolverSet = true;
        }
        try
        {
            var abi = CudaNative.AbiVersion();
            if (abi != CudaNative.ExpectedAbiVersion)
            {
                return $"--device cuda: {FileName} speaks ABI version {abi}, this program version {CudaNative.ExpectedAbiVersion}; rebuild it with native/build.sh";
            }
            if (CudaNative.DeviceCount(out var count) != CudaNative.Ok)
            {
                return $"--device cuda found no usable GPU: {Marshal.PtrToStringUTF8(CudaNative.LastError())}";
            }
            return count > 0 ? null : "--device cuda found no GPU (the CUDA runtime reports 0 devices)";
        }
        finally
        {
            _handle = 0;
        }
    }

    private sealed class SystemLoader : INativeLoader
    {
        public string BaseDirectory => AppContext.BaseDirectory;

        public string? GetEnvironmentVariable(string name) => Environment.GetEnvironmentVariable(name);

        public bool FileExists(string path) => File.Exists(path);

        public bool TryLoad(string pathOrName, out nint handle, out string error)
        {
            try
            {
                handle = NativeLibrary.Load(pathOrName);
                error = "";
                return true;
            }
            catch (DllNotFoundException e)
            {
                handle = 0;
                error = e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? e.Message;
                return false;
            }
        }
    }
}
