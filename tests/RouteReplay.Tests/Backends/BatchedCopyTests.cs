using RouteReplay.Backends;
using RouteReplay.Cache;
using RouteReplay.Engine;
using RouteReplay.Routing;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Backends;

/// <summary>
/// The batched payload copies: the contiguous forms equal the per-block ones byte for byte, a KV round trip through
/// host buffers restores every block, and the backend sizes the engine's pool.
/// </summary>
public sealed class BatchedCopyTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    [Fact]
    public void Contiguous_batched_copies_equal_the_per_block_copies_and_round_trip()
    {
        using var backend = model.CreateBackend(numBlocks: 8);
        var routing = new RoutingChannel(RoutingFormat.For(model.Config), 8, 16);
        var copier = new PayloadCopier(backend, [routing]);
        Fill(backend, routing);
        int[] blocks = [6, 1, 4];
        var batched = new byte[blocks.Length * copier.PayloadBytes];
        copier.DeviceToHost(blocks, batched);
        var single = new byte[copier.PayloadBytes];
        for (var i = 0; i < blocks.Length; i++)
        {
            copier.DeviceToHost(blocks[i], single);
            Assert.Equal(single, batched.AsSpan(i * copier.PayloadBytes, copier.PayloadBytes).ToArray());
        }

        int[] targets = [0, 2, 3];
        copier.HostToDevice(batched, targets);
        var back = new byte[batched.Length];
        copier.DeviceToHost(targets, back);
        Assert.Equal(batched, back);
        Assert.Throws<ArgumentException>(() => copier.DeviceToHost(blocks, new byte[copier.PayloadBytes]));
    }

    [Fact]
    public void Host_buffer_copies_of_the_interface_move_kv_in_both_directions()
    {
        using var backend = model.CreateBackend(numBlocks: 4);
        IModelBackend b = backend;
        Fill(backend, new RoutingChannel(RoutingFormat.For(model.Config), 4, 16));
        using var host = b.AllocateHostBuffer(2L * b.KvBytesPerBlock);
        nint[] addresses = [host.Address, host.Address + b.KvBytesPerBlock];
        b.CopyBlocksToHost([2, 3], addresses);
        b.Synchronize();
        b.CopyBlocksToDevice(addresses, [0, 1]);
        var expected = new byte[b.KvBytesPerBlock];
        var actual = new byte[b.KvBytesPerBlock];
        b.ReadBlockKv(2, expected);
        b.ReadBlockKv(0, actual);
        Assert.Equal(expected, actual);
        Assert.Equal(expected, host.AsSpan<byte>(0, b.KvBytesPerBlock).ToArray());
    }

    [Fact]
    public void The_pool_takes_the_backends_block_count_and_an_explicit_count_must_agree()
    {
        using var backend = model.CreateBackend(numBlocks: 20);
        using var engine = new LlmEngine(backend, model.Tokenizer, [], new EngineOptions(), "test");
        Assert.Equal(20, engine.Pool.NumBlocks);
        using var other = model.CreateBackend(numBlocks: 20);
        var error = Assert.Throws<ArgumentException>(() => new LlmEngine(other, model.Tokenizer, [], new EngineOptions { NumBlocks = 30 }, "test"));
        Assert.Contains("20 blocks", error.Message);
    }

    [Fact]
    public void Batch_outputs_live_in_buffers_the_backend_allocates_and_rows_are_bounds_checked()
    {
        var allocated = new List<long>();
        using var batch = new ForwardBatch(5, 2, 3, RoutingFormat.For(model.Config), 100, 3, bytes =>
        {
            allocated.Add(bytes);
            return NativeHostBuffer.Allocate(bytes);
        });
        Assert.Equal([5L * batch.RoutingFormat.RowBytes, 3L * 100 * sizeof(float), 5L, 3L * sizeof(int)], allocated);
        batch.LogitRow(2).Fill(1.5f);
        Assert.Equal(1.5f, batch.LogitRow(2)[99]);
        Assert.Throws<ArgumentOutOfRangeException>(() => batch.LogitRow(3));
        Assert.Throws<ArgumentOutOfRangeException>(() => batch.RoutingRow(5));
    }

    private static void Fill(RouteReplay.Backends.Cpu.CpuBackend backend, RoutingChannel routing)
    {
        var kv = new byte[backend.KvBytesPerBlock];
        for (var block = 0; block < backend.NumBlocks; block++)
        {
            new Random(block).NextBytes(kv);
            backend.WriteBlockKv(block, kv);
            for (var i = 0; i < routing.BlockRows(block).Length; i++)
            {
                routing.BlockRows(block)[i] = (byte)((block * 31) + i);
            }
        }
    }
}
