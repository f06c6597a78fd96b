using RouteReplay.Backends;
using RouteReplay.Cache;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Routing;

namespace RouteReplay.Tests.Cache;

/// <summary>
/// The host tier on its own: a device pool of a few blocks over a byte-array KV store, with the real routing channel and
/// payload copier. Every payload carries a seed in its KV bytes and routing rows, so a test sees which copy landed where.
/// </summary>
public sealed class HostTierTests
{
    private const int BlockSize = 4;
    private static readonly BlockKey Root = BlockKey.Root(7);

    [Fact]
    public void An_evicted_key_the_host_tier_already_holds_is_not_demoted_again()
    {
        var t = new Tiers(deviceBlocks: 2, hostBlocks: 4);
        t.Cache(key: 1, seed: 10);
        t.EvictAll();
        Assert.Equal(1, t.Host.BlocksDemoted);
        Assert.Equal(1, t.Host.CachedBlockCount);

        t.Cache(key: 1, seed: 20);
        t.EvictAll();
        Assert.Equal(1, t.Host.BlocksDemoted);
        Assert.Equal(1, t.Host.CachedBlockCount);
        Assert.Equal(10, t.PromoteSeed(key: 1));

        t.Device.Release(t.PromotedBlock);
        t.EvictAll();
        Assert.Equal(1, t.Host.BlocksDemoted);
        Assert.Equal(10, t.PromoteSeed(key: 1));
    }

    [Fact]
    public void A_tier_full_of_swapped_blocks_demotes_nothing_and_refuses_more_swaps()
    {
        var t = new Tiers(deviceBlocks: 4, hostBlocks: 2);
        var swapped = new[] { t.Filled(seed: 1), t.Filled(seed: 2) }.Select(t.Host.SwapOut).ToArray();
        Assert.Equal(2, t.Host.UsedBlockCount);
        Assert.False(t.Host.CanSwapOut(1));
        t.Device.ReleaseSequence([0, 1]);

        t.Cache(key: 5, seed: 50);
        t.EvictAll();
        Assert.Equal(0, t.Host.BlocksDemoted);
        Assert.False(t.Host.TryPromote(t.Key(5), Root, Tiers.Tokens(5), out _));

        var back = t.Device.Allocate();
        t.Host.SwapIn(swapped[1], back);
        Assert.Equal(2, t.SeedOf(back));
        Assert.True(t.Host.CanSwapOut(1));
    }

    [Fact]
    public void A_tier_full_of_demoted_blocks_evicts_the_least_recently_demoted()
    {
        var t = new Tiers(deviceBlocks: 2, hostBlocks: 2);
        foreach (var key in new[] { 1, 2, 3 })
        {
            t.Cache(key, seed: key * 10);
            t.EvictAll();
        }
        Assert.Equal(3, t.Host.BlocksDemoted);
        Assert.Equal(2, t.Host.CachedBlockCount);
        Assert.False(t.Host.TryPromote(t.Key(1), Root, Tiers.Tokens(1), out _));
        Assert.Equal(30, t.PromoteSeed(key: 3));

        Assert.True(t.Host.CanSwapOut(2), "demoted blocks are evictable, so a swap may take their place");
        t.Device.Release(t.PromotedBlock);
        t.Host.SwapOut(t.Filled(seed: 4));
        t.Host.SwapOut(t.Filled(seed: 5));
        Assert.Equal(0, t.Host.CachedBlockCount);
    }

    [Fact]
    public void Promotion_with_no_free_device_block_is_a_miss_that_keeps_the_host_copy()
    {
        var t = new Tiers(deviceBlocks: 2, hostBlocks: 2);
        t.Cache(key: 1, seed: 10);
        t.EvictAll();
        var held = new[] { t.Device.Allocate(), t.Device.Allocate() };

        Assert.False(t.Host.TryPromote(t.Key(1), Root, Tiers.Tokens(1), out var block));
        Assert.Equal(-1, block);
        Assert.Equal(1, t.Host.CachedBlockCount);
        Assert.Equal(0, t.Host.UsedBlockCount);

        t.Device.ReleaseSequence(held);
        Assert.Equal(10, t.PromoteSeed(key: 1));
    }

    [Fact]
    public void Promotion_into_a_device_pool_of_cached_blocks_demotes_the_evicted_one_without_touching_the_promoted_payload()
    {
        var t = new Tiers(deviceBlocks: 2, hostBlocks: 1);
        t.Cache(key: 1, seed: 10);
        t.EvictAll();
        t.Cache(key: 2, seed: 20);
        t.Cache(key: 3, seed: 30);
        Assert.Equal(0, t.Device.UsedBlockCount);
        Assert.Equal(2, t.Device.CachedBlockCount);

        // The only host block holds key 1 and is held by the promotion while the device evicts key 2 for it.
        Assert.Equal(10, t.PromoteSeed(key: 1));
        Assert.Equal(1, t.Host.BlocksDemoted);
        Assert.False(t.Device.Holds(t.Key(2)));
        Assert.True(t.Device.Holds(t.Key(1)));
        Assert.True(t.Device.TryHit(t.Key(3), Root, Tiers.Tokens(3), out var three));
        Assert.Equal(30, t.SeedOf(three));

        var roomy = new Tiers(deviceBlocks: 2, hostBlocks: 2);
        roomy.Cache(key: 1, seed: 10);
        roomy.EvictAll();
        roomy.Cache(key: 2, seed: 20);
        roomy.Cache(key: 3, seed: 30);
        Assert.Equal(10, roomy.PromoteSeed(key: 1));
        Assert.Equal(2, roomy.Host.BlocksDemoted);
        roomy.Device.Release(roomy.PromotedBlock);
        Assert.Equal(20, roomy.PromoteSeed(key: 2));
    }

    [Fact]
    public void Device_evictions_during_a_swap_in_demote_into_the_freed_host_blocks_and_every_payload_survives()
    {
        var t = new Tiers(deviceBlocks: 3, hostBlocks: 3);
        var swapped = new[] { t.Filled(seed: 1), t.Filled(seed: 2) };
        var hostBlocks = swapped.Select(t.Host.SwapOut).ToArray();
        t.Device.ReleaseSequence(swapped);
        t.Cache(key: 4, seed: 40);
        t.Cache(key: 5, seed: 50);
        t.Cache(key: 6, seed: 60);
        Assert.Equal(3, t.Device.CachedBlockCount);

        var resumed = new List<int>();
        foreach (var hostBlock in hostBlocks)
        {
            var block = t.Device.Allocate();
            t.Host.SwapIn(hostBlock, block);
            resumed.Add(block);
        }

        Assert.Equal([1, 2], resumed.Select(t.SeedOf));
        Assert.Equal(2, t.Host.BlocksDemoted);
        Assert.Equal(0, t.Host.UsedBlockCount);
        Assert.Equal(2, t.Host.BlocksSwappedIn);
        Assert.True(t.Device.TryHit(t.Key(6), Root, Tiers.Tokens(6), out var six));
        Assert.Equal(60, t.SeedOf(six));
        t.Device.ReleaseSequence([.. resumed, six]);
        Assert.Equal(50, t.PromoteSeed(key: 5));
    }

    /// <summary>A device pool with the routing channel, a host tier, and a KV store of a few bytes per block.</summary>
    private sealed class Tiers
    {
        private readonly KvArray _kv;

        public Tiers(int deviceBlocks, int hostBlocks)
        {
            Routing = new RoutingChannel(new RoutingFormat([1, 3], 2, 8), deviceBlocks, BlockSize);
            Device = new BlockPool(deviceBlocks, BlockSize, enablePrefixCaching: true, [Routing]);
            _kv = new KvArray(deviceBlocks);
            var copier = new PayloadCopier(_kv, Device.Channels);
            Host = new HostTier(Device, copier, hostBlocks);
            Device.EvictionSink = new DeviceEvictionRelay(copier, Host);
        }

        public BlockPool Device { get; }

        public RoutingChannel Routing { get; }

        public HostTier Host { get; }

        /// <summary>The device block of the last <see cref="PromoteSeed"/>, held by the test.</summary>
        public int PromotedBlock { get; private set; } = -1;

        public static int[] Tokens(int key) => [key, key + 1, key + 2, key + 3];

        public BlockKey Key(int key) => BlockKey.Chain(Root, Tokens(key));

        /// <summary>Allocates a device block and writes a payload made from <paramref name="seed"/>.</summary>
        public int Filled(int seed)
        {
            var block = Device.Allocate();
            _kv.Block(block).Fill((byte)seed);
            var rows = Routing.BlockRows(block);
            for (var i = 0; i < rows.Length; i++)
            {
                rows[i] = (byte)((seed + i) % 8);
            }
            return block;
        }

        /// <summary>Fills a block, commits it under <paramref name="key"/> and frees it: cached on the device.</summary>
        public void Cache(int key, int seed)
        {
            var block = Filled(seed);
            Device.Commit(block, Key(key), Root, Tokens(key));
            Device.Release(block);
        }

        /// <summary>Allocates every free device block and frees them again, evicting every cached one.</summary>
        public void EvictAll()
        {
            var blocks = new List<int>();
            while (Device.CanAllocate(1))
            {
                blocks.Add(Device.Allocate());
            }
            Device.ReleaseSequence([.. blocks]);
        }

        /// <summary>Promotes <paramref name="key"/> (asserting the hit) and returns the seed its payload carries.</summary>
        public int PromoteSeed(int key)
        {
            Assert.True(Host.TryPromote(Key(key), Root, Tokens(key), out var block), $"key {key} must be in the host tier");
            PromotedBlock = block;
            Assert.True(Device.Holds(Key(key)));
            return SeedOf(block);
        }

        /// <summary>The seed of a device block's payload, asserting its KV and routing rows agree on it.</summary>
        public int SeedOf(int block)
        {
            var kv = _kv.Block(block);
            var seed = kv[0];
            Assert.True(kv.IndexOfAnyExcept(seed) < 0, $"block {block}'s KV is not one payload");
            var rows = Routing.BlockRows(block);
            for (var i = 0; i < rows.Length; i++)
            {
                Assert.Equal((byte)((seed + i) % 8), rows[i]);
            }
            return seed;
        }
    }

    /// <summary>The KV half of a payload: 16 bytes per block in an array (the copier touches nothing else).</summary>
    private sealed class KvArray(int numBlocks) : IModelBackend
    {
        private readonly byte[] _bytes = new byte[numBlocks * 16];

        public ModelConfig Config => throw new NotSupportedException();

        public RoutingFormat RoutingFormat => throw new NotSupportedException();

        public int BlockSize => HostTierTests.BlockSize;

        public int NumBlocks => numBlocks;

        public TensorDType KvDType => TensorDType.F32;

        public int KvBytesPerBlock => 16;

        public Span<byte> Block(int block) => _bytes.AsSpan(block * 16, 16);

        public void Forward(ForwardBatch batch) => throw new NotSupportedException();

        public void ReadBlockKv(int block, Span<byte> destination) => Block(block).CopyTo(destination);

        public void WriteBlockKv(int block, ReadOnlySpan<byte> source) => source.CopyTo(Block(block));

        public void Dispose()
        {
        }
    }
}
