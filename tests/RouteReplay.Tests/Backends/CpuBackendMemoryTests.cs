using System.Runtime.CompilerServices;
using RouteReplay.Backends;
using RouteReplay.Backends.Cpu;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Backends;

/// <summary>The CPU backend gives back its KV arrays and weights while released, and computes as before once restored.</summary>
public sealed class CpuBackendMemoryTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private static readonly int[] Prompt = [9707, 11, 1879, 0, 576, 6722, 315, 9625, 374, 12095, 13];

    private static (float[] Logits, byte[] Routing) Forward(CpuBackend backend)
    {
        using var batch = new ForwardBatch(64, 4, 8, backend.RoutingFormat, backend.Config.VocabSize);
        var sequence = batch.AddSequence(Enumerable.Range(0, 8).ToArray());
        for (var p = 0; p < Prompt.Length; p++)
        {
            batch.AddToken(sequence, Prompt[p], p, p, needsLogits: p == Prompt.Length - 1, ReadOnlySpan<byte>.Empty);
        }
        backend.Forward(batch);
        return (batch.LogitRow(0).ToArray(), batch.Routing[..(Prompt.Length * backend.RoutingFormat.RowBytes)].ToArray());
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference[] KvArrays(CpuBackend backend) =>
        [.. backend.Cache!.Keys.Concat(backend.Cache.Values).Select(array => new WeakReference(array))];

    [Fact]
    public void A_released_KV_cache_is_collected_and_a_restored_one_computes_the_same_outputs()
    {
        using var backend = model.CreateBackend();
        var before = Forward(backend);
        var bytes = backend.KvCacheBytes;
        Assert.Equal((long)backend.NumBlocks * backend.KvBytesPerBlock, bytes);
        var arrays = KvArrays(backend);

        backend.ReleaseKvCache();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();

        Assert.True(backend.KvCacheReleased);
        Assert.Equal(0, backend.KvCacheBytes);
        Assert.All(arrays, array => Assert.False(array.IsAlive, "a KV array is still referenced after the release"));
        Assert.Throws<InvalidOperationException>(() => Forward(backend));
        Assert.Throws<InvalidOperationException>(() => backend.ReadBlockKv(0, new byte[backend.KvBytesPerBlock]));

        backend.RestoreKvCache();

        Assert.False(backend.KvCacheReleased);
        Assert.Equal(bytes, backend.KvCacheBytes);
        var after = Forward(backend);
        Assert.Equal(before.Logits, after.Logits);
        Assert.Equal(before.Routing, after.Routing);
    }

    [Fact]
    public void Weights_kept_in_host_memory_come_back_and_dropped_weights_come_back_only_as_new_weights()
    {
        using var backend = model.CreateBackend();
        var before = Forward(backend);

        backend.ReleaseWeights(keepHostCopy: true);
        Assert.Equal(WeightsResidence.HostCopy, backend.Weights);
        Assert.Throws<InvalidOperationException>(() => Forward(backend));
        backend.RestoreWeights();
        Assert.Equal(WeightsResidence.Resident, backend.Weights);
        Assert.Equal(before.Logits, Forward(backend).Logits);

        backend.ReleaseWeights(keepHostCopy: true);
        backend.ReleaseWeights(keepHostCopy: false);
        Assert.Equal(WeightsResidence.Discarded, backend.Weights);
        Assert.Throws<InvalidOperationException>(backend.RestoreWeights);

        using (var checkpoint = Checkpoint.Open(model.Directory))
        {
            backend.ApplyWeights(backend.PrepareWeights(checkpoint));
        }

        Assert.Equal(WeightsResidence.Resident, backend.Weights);
        var after = Forward(backend);
        Assert.Equal(before.Logits, after.Logits);
        Assert.Equal(before.Routing, after.Routing);
    }
}
