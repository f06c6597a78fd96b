using RouteReplay.Cli.Bench;
using RouteReplay.Model.Presets;

namespace RouteReplay.Tests.Cli;

public sealed class DecodeRooflineTests
{
    [Fact]
    public void A_qwen3_30b_a3b_decode_step_reads_every_dense_weight_the_distinct_experts_and_the_kv()
    {
        var config = ModelPresets.Get("qwen3-30b-a3b").Config;
        // Batch 1: 8 experts in each of 48 layers; 640 tokens of context.
        var roofline = DecodeRoofline.For(config, distinctExperts: 8 * 48, contextTokens: 640);
        long attention = ((4096L * 2048) + (2 * 512L * 2048) + (2048L * 4096)) * 2, router = 128L * 2048 * 2, lmHead = 151_936L * 2048 * 2;
        Assert.Equal((48 * (attention + router)) + lmHead, roofline.WeightBytes);
        Assert.Equal(384L * 3 * 768 * 2048 * 2, roofline.ExpertBytes);
        Assert.Equal(640L * 48 * 2 * 512 * 2, roofline.KvBytes);
        Assert.Equal(roofline.TotalBytes / 4.0e12, roofline.Seconds(4000), 12);
    }
}
