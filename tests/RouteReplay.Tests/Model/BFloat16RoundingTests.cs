using CsCheck;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Tests.Model;

public sealed class BFloat16RoundingTests
{
    [Theory]
    [InlineData(0x3F800000u, (ushort)0x3F80)] // 1.0 exactly
    [InlineData(0x3F808000u, (ushort)0x3F80)] // halfway, lower neighbour even: down
    [InlineData(0x3F818000u, (ushort)0x3F82)] // halfway, lower neighbour odd: up to even
    [InlineData(0x3F808001u, (ushort)0x3F81)] // just past halfway: up
    [InlineData(0x3F807FFFu, (ushort)0x3F80)] // just below halfway: down
    [InlineData(0xBF818000u, (ushort)0xBF82)] // negative tie: to even magnitude
    [InlineData(0x80000000u, (ushort)0x8000)] // -0 keeps its sign
    [InlineData(0x7F800000u, (ushort)0x7F80)] // +inf
    [InlineData(0xFF800000u, (ushort)0xFF80)] // -inf
    [InlineData(0x7F7FFFFFu, (ushort)0x7F80)] // largest float rounds up to inf
    [InlineData(0x00000001u, (ushort)0x0000)] // smallest subnormal rounds to 0
    public void Rounds_to_nearest_even(uint input, ushort expected)
    {
        var bytes = SafetensorsWriter.ToBFloat16([BitConverter.UInt32BitsToSingle(input)]);
        Assert.Equal(expected, BitConverter.ToUInt16(bytes));
    }

    [Theory]
    [InlineData(0x7FC00000u)] // quiet NaN
    [InlineData(0x7F800001u)] // signalling NaN whose payload lies only in the dropped bits
    [InlineData(0xFFFFFFFFu)]
    public void NaN_stays_NaN(uint input)
    {
        var bytes = SafetensorsWriter.ToBFloat16([BitConverter.UInt32BitsToSingle(input)]);
        var widened = BitConverter.UInt32BitsToSingle((uint)BitConverter.ToUInt16(bytes) << 16);
        Assert.True(float.IsNaN(widened));
    }

    [Fact]
    public void Matches_the_reference_for_any_finite_value()
    {
        var lowHalves = Gen.OneOf(Gen.UShort.Select(low => (uint)low), Gen.OneOf(0x7FFFu, 0x8000u, 0x8001u));
        var bitPatterns = Gen.Select(Gen.UShort, lowHalves, (high, low) => ((uint)high << 16) | low);
        bitPatterns.Where(bits => !float.IsNaN(BitConverter.UInt32BitsToSingle(bits))).Sample(bits =>
        {
            var value = BitConverter.UInt32BitsToSingle(bits);
            var actual = BitConverter.ToUInt16(SafetensorsWriter.ToBFloat16([value]));
            Assert.Equal(BFloat16Reference.Round(value), actual);
        }, iter: 20_000);
    }

    [Fact]
    public void Converts_whole_spans_in_order()
    {
        float[] values = [1f, -2f, 0.5f, 3.140625f];
        var bytes = SafetensorsWriter.ToBFloat16(values);
        Assert.Equal(values.Length * 2, bytes.Length);
        Assert.Equal(values.Select(BFloat16Reference.Round), Enumerable.Range(0, values.Length).Select(i => BitConverter.ToUInt16(bytes, i * 2)));
    }
}
