using RouteReplay.Backends.Cuda;

namespace RouteReplay.Tests.Backends.Cuda;

/// <summary>Each missing piece of the CUDA stack is named in one line, in the order a user must fix them.</summary>
public sealed class CudaLibraryTests
{
    private const string Base = "/opt/routereplay/bin";

    [Fact]
    public void A_missing_driver_is_named_before_anything_else()
    {
        var loader = new FakeLoader();
        var problem = CudaLibrary.Problem(loader, _ => null, out _);
        Assert.Contains("libcuda.so.1", problem);
        Assert.Contains("--device cpu", problem);
    }

    [Fact]
    public void A_configured_path_that_does_not_exist_names_the_variable()
    {
        var loader = new FakeLoader { Driver = true };
        loader.Environment[CudaLibrary.PathVariable] = "/nowhere/libroutereplay_cuda.so";
        var problem = CudaLibrary.Problem(loader, _ => null, out _);
        Assert.Contains(CudaLibrary.PathVariable, problem);
        Assert.Contains("/nowhere/libroutereplay_cuda.so", problem);
    }

    [Fact]
    public void A_library_found_nowhere_says_where_it_looked_and_how_to_build_it()
    {
        var problem = CudaLibrary.Problem(new FakeLoader { Driver = true }, _ => null, out _);
        Assert.Contains(CudaLibrary.FileName, problem);
        Assert.Contains(Base, problem);
        Assert.Contains("native/build.sh", problem);
    }

    [Fact]
    public void A_library_that_does_not_load_reports_the_loaders_reason()
    {
        var loader = new FakeLoader { Driver = true };
        var path = Path.Combine(Base, CudaLibrary.FileName);
        loader.Files.Add(path);
        loader.Failures[path] = "libcudart.so.13: cannot open shared object file: No such file or directory";
        var problem = CudaLibrary.Problem(loader, _ => null, out _);
        Assert.Contains(path, problem);
        Assert.Contains("libcudart.so.13", problem);
    }

    [Fact]
    public void Once_loaded_the_device_check_decides()
    {
        var loader = new FakeLoader { Driver = true };
        loader.Files.Add(Path.Combine(Base, CudaLibrary.FileName));
        Assert.Equal("no GPU", CudaLibrary.Problem(loader, _ => "no GPU", out _));
        Assert.Null(CudaLibrary.Problem(loader, _ => null, out var handle));
        Assert.NotEqual(0, handle);
    }

    [Fact]
    public void The_program_folder_is_searched_first_then_native_build_above_it()
    {
        var candidates = CudaLibrary.Candidates("/repo/src/RouteReplay.Cli/bin/Debug/net10.0").ToArray();
        Assert.Equal("/repo/src/RouteReplay.Cli/bin/Debug/net10.0/libroutereplay_cuda.so", candidates[0]);
        Assert.Contains("/repo/native/build/libroutereplay_cuda.so", candidates);
    }

    private sealed class FakeLoader : INativeLoader
    {
        public bool Driver { get; init; }

        public Dictionary<string, string> Environment { get; } = [];

        public HashSet<string> Files { get; } = [];

        public Dictionary<string, string> Failures { get; } = [];

        public string BaseDirectory => Base;

        public string? GetEnvironmentVariable(string name) => Environment.GetValueOrDefault(name);

        public bool FileExists(string path) => Files.Contains(path);

        public bool TryLoad(string pathOrName, out nint handle, out string error)
        {
            var ok = pathOrName == CudaLibrary.DriverLibrary ? Driver : Files.Contains(pathOrName) && !Failures.ContainsKey(pathOrName);
            handle = ok ? 42 : 0;
            error = Failures.GetValueOrDefault(pathOrName) ?? "not found";
            return ok;
        }
    }
}
