using BenchmarkDotNet.Attributes;
using Garnet;
using Microsoft.Extensions.Logging.Abstractions;
using RouteReplay.Cache;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Storage;

namespace RouteReplay.Bench;

/// <summary>
/// Block store throughput: 64 encoded values of the small preset's block (16 tokens, fp32 KV of 8 layers, routing),
/// written then read the way the store tier does it (4 writes in flight; reads in windows of 8). MB/s and blocks/s =
/// 64 values (and their bytes) / time. The file store writes to a temporary folder; Redis is a Garnet server in the
/// benchmark process on loopback.
/// </summary>
[MemoryDiagnoser]
public class StoreBenchmarks
{
    private const int Blocks = 64;
    private string _folder = null!;
    private GarnetServer? _garnet;
    private IBlockStore _store = null!;
    private byte[][] _values = null!;
    private BlockKey[] _keys = null!;

    [Params("file", "redis")]
    public string Store { get; set; } = "file";

    [GlobalSetup]
    public void Setup()
    {
        var layout = new PayloadLayout(16, TensorDType.F32, 8, 2, 32, 8 * 2 * 16 * 2 * 32 * sizeof(float), [new ChannelLayout("routing", 64)]);
        var codec = new PayloadCodec(layout);
        var random = new Random(1);
        var payload = new byte[layout.PayloadBytes];
        _keys = new BlockKey[Blocks];
        _values = new byte[Blocks][];
        var parent = BlockKey.Root(7);
        for (var i = 0; i < Blocks; i++)
        {
            random.NextBytes(payload);
            var tokens = Enumerable.Range(i * 16, 16).ToArray();
            _keys[i] = BlockKey.Chain(parent, tokens);
            _values[i] = new byte[codec.EncodedLength(16)];
            codec.Encode(new PayloadHeader(7, _keys[i], parent), tokens, payload, _values[i]);
            parent = _keys[i];
        }
        _folder = Directory.CreateTempSubdirectory("routereplay-store-bench-").FullName;
        if (Store == "redis")
        {
            var port = 7300 + Environment.ProcessId % 500;
            _garnet = new GarnetServer(["--port", port.ToString(), "--bind", "127.0.0.1", "--memory", "512m", "--index", "16m"], NullLoggerFactory.Instance);
            _garnet.Start();
            _store = BlockStores.Open(BlockStoreSpec.Parse($"redis://127.0.0.1:{port}"), new BlockStoreOptions(0, TimeSpan.FromHours(1), TimeSpan.FromSeconds(5)));
        }
        else
        {
            _store = new FileBlockStore(_folder, 0);
        }
        Console.WriteLine($"// {Store}: {Blocks} values of {_values[0].Length} bytes = {Blocks * (long)_values[0].Length} bytes per operation");
        Write64Blocks().GetAwaiter().GetResult();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _store.DisposeAsync().AsTask().Wait();
        _garnet?.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    [Benchmark]
    public async Task Write64Blocks()
    {
        var inFlight = new Task[4];
        for (var i = 0; i < Blocks; i += inFlight.Length)
        {
            for (var j = 0; j < inFlight.Length; j++)
            {
                inFlight[j] = _store.PutAsync(_keys[i + j], _values[i + j], CancellationToken.None).AsTask();
            }
            await Task.WhenAll(inFlight);
        }
    }

    [Benchmark]
    public async Task<long> Read64Blocks()
    {
        long bytes = 0;
        var window = new Task<System.Buffers.IMemoryOwner<byte>?>[8];
        for (var i = 0; i < Blocks; i += window.Length)
        {
            for (var j = 0; j < window.Length; j++)
            {
                window[j] = _store.GetAsync(_keys[i + j], CancellationToken.None).AsTask();
            }
            foreach (var read in window)
            {
                using var value = await read;
                bytes += value!.Memory.Length;
            }
        }
        return bytes;
    }
}
