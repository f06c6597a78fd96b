using RouteReplay.Routing;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Routing;

public sealed class RoutingFormatTests
{
    [Theory]
    [InlineData(8, RoutingDType.UInt8, 255, "|u1")]
    [InlineData(255, RoutingDType.UInt8, 255, "|u1")]
    [InlineData(256, RoutingDType.UInt16, 65535, "<u2")]
    [InlineData(512, RoutingDType.UInt16, 65535, "<u2")]
    public void The_element_type_follows_the_expert_count_and_its_maximum_is_the_sentinel(int experts, RoutingDType dtype, int sentinel, string descriptor)
    {
        var format = new RoutingFormat([1, 2, 3], 4, experts);
        Assert.Equal(dtype, format.DType);
        Assert.Equal(sentinel, format.Sentinel);
        Assert.Equal(descriptor, format.NumpyDescriptor);
        Assert.Equal(3 * 4 * format.ElementSize, format.RowBytes);
    }

    [Theory]
    [InlineData(8)]
    [InlineData(300)]
    public void Reset_rows_hold_the_sentinel_until_every_element_is_written(int experts)
    {
        var format = new RoutingFormat([0, 1], 2, experts);
        var rows = new byte[2 * format.RowBytes];
        format.Reset(rows);
        Assert.True(format.IsUnsetRow(rows));
        for (var i = 0; i < (2 * format.ElementsPerRow) - 1; i++)
        {
            format.Set(rows, i, i % experts);
            Assert.True(format.ContainsSentinel(rows));
        }
        format.Set(rows, (2 * format.ElementsPerRow) - 1, experts - 1);
        Assert.False(format.ContainsSentinel(rows));
        Assert.Equal(experts - 1, format.Get(rows, (2 * format.ElementsPerRow) - 1));
    }

    [Fact]
    public void Uint16_ids_are_little_endian()
    {
        var format = new RoutingFormat([0], 1, 1000);
        var row = new byte[2];
        format.Set(row, 0, 0x0302);
        Assert.Equal(new byte[] { 0x02, 0x03 }, row);
    }

    [Theory]
    [InlineData(8)]
    [InlineData(300)]
    public void Npy_files_carry_shape_dtype_and_the_rows(int experts)
    {
        var format = new RoutingFormat([1, 3, 5], 2, experts);
        var rows = new byte[5 * format.RowBytes];
        for (var i = 0; i < 5 * format.ElementsPerRow; i++)
        {
            format.Set(rows, i, (i * 7) % experts);
        }
        var path = Path.GetTempFileName();
        try
        {
            NpyFile.WriteRouting(path, format, rows);
            var array = NpyReader.Read(path);
            Assert.Equal(format.NumpyDescriptor, array.Descriptor);
            Assert.Equal(new[] { 5, 3, 2 }, array.Shape);
            Assert.Equal(rows, array.Data);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
