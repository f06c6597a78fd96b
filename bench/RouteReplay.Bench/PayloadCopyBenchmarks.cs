using BenchmarkDotNet.Attributes;
using RouteReplay.Backends.Cpu;
using RouteReplay.Cache;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;
using RouteReplay.Routing;

namespace RouteReplay.Bench;

/// <summary>
/// Swap-out and swap-in of 256 blocks of the small preset (KV of every layer plus the routing rows) through the
/// payload copier, against one plain copy of the same number of bytes. GB/s = 256 * PayloadBytes / time.
/// </summary>
[MemoryDiagnoser]
public class PayloadCopyBenchmarks
{
    private const int Blocks = 256;
    private string _dir = null!;
    private CpuBackend _backend = null!;
    private PayloadCopier _copier = null!;
    private byte[] _host = null!;
    private byte[] _plainSource = null!;

    [GlobalSetup]
    public void Setup()
    {
        _dir = Directory.CreateTempSubdirectory("routereplay-bench-").FullName;
        ModelMaker.Make(ModelPresets.Get("small"), _dir);
        using var checkpoint = Checkpoint.Open(_dir);
        _backend = CpuBackend.Load(checkpoint, Blocks, 16);
        var routing = new RoutingChannel(RoutingFormat.For(checkpoint.Config), Blocks, 16);
        _copier = new PayloadCopier(_backend, [routing]);
        _host = GC.AllocateUninitializedArray<byte>(Blocks * _copier.PayloadBytes, pinned: true);
        _plainSource = GC.AllocateUninitializedArray<byte>(_host.Length, pinned: true);
        Console.WriteLine($"// payload {_copier.PayloadBytes} bytes per block, of which routing {_copier.RoutingBytes}; {Blocks} blocks = {_host.Length} bytes per operation");
    }

    [GlobalCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    [Benchmark]
    public void SwapOut256Blocks()
    {
        for (var block = 0; block < Blocks; block++)
        {
            _copier.DeviceToHost(block, _host.AsSpan(block * _copier.PayloadBytes, _copier.PayloadBytes));
        }
    }

    [Benchmark]
    public void SwapIn256Blocks()
    {
        for (var block = 0; block < Blocks; block++)
        {
            _copier.HostToDevice(_host.AsSpan(block * _copier.PayloadBytes, _copier.PayloadBytes), block);
        }
    }

    [Benchmark(Baseline = true)]
    public void PlainCopyOfTheSameBytes() => _plainSource.AsSpan().CopyTo(_host);
}
