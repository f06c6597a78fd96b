using RouteReplay.Backends.Cuda;

namespace RouteReplay.Tests.Backends.Cuda;

public sealed class KvCacheSizingTests
{
    private const ulong GiB = 1UL << 30;

    [Fact]
    public void The_cache_gets_what_the_utilization_leaves_after_what_is_already_in_use()
    {
        // 100 GiB card, 40 GiB in use (weights, buffers, context): 0.9 leaves 50 GiB, in whole 1.5 MiB blocks.
        Assert.Equal(34_133, KvCacheSizing.Blocks(100 * GiB, 60 * GiB, 0.9, 3 << 19));
        Assert.Equal(0, KvCacheSizing.Blocks(100 * GiB, 5 * GiB, 0.9, 3 << 19));
        Assert.Equal(0, KvCacheSizing.Blocks(100 * GiB, 60 * GiB, 0.3, 3 << 19));
    }

    [Fact]
    public void Too_few_blocks_for_one_request_names_both_flags()
    {
        Assert.Null(KvCacheSizing.Shortfall(300, 256, 0.9, 100 * GiB, 60 * GiB, 3 << 19));
        var message = KvCacheSizing.Shortfall(10, 256, 0.5, 100 * GiB, 60 * GiB, 3 << 19);
        Assert.Contains("--gpu-memory-utilization 0.5", message);
        Assert.Contains("--max-model-len", message);
        Assert.Contains("10 KV blocks", message);
    }
}
