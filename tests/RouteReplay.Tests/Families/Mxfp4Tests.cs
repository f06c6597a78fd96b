using RouteReplay.Backends.Cpu;

namespace RouteReplay.Tests.Families;

public sealed class Mxfp4Tests
{
    [Fact]
    public void Each_nibble_is_an_e2m1_code_scaled_by_its_group_power_of_two()
    {
        var blocks = new byte[32];
        blocks[0] = 0x21; // low nibble 1 (0.5), high nibble 2 (1.0)
        blocks[1] = 0xF7; // 7 (6.0), 15 (-6.0)
        blocks[16] = 0x9C; // group 2: 12 (-2.0), 9 (-0.5)
        byte[] scales = [127, 129];
        var values = Mxfp4.Decode(blocks, scales);
        Assert.Equal(64, values.Length);
        Assert.Equal([0.5f, 1f, 6f, -6f], values[..4]);
        Assert.All(values[4..32], v => Assert.Equal(0f, v));
        Assert.Equal([-8f, -2f], values[32..34]);
    }
}
