using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using CsCheck;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Tests.Model;

public sealed class SafetensorsRoundTripTests
{
    [Fact]
    public void Written_tensors_read_back_with_their_dtypes_shapes_and_values()
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.safetensors");
        var random = new Random(1234);
        var f32 = Enumerable.Range(0, 6).Select(_ => (float)random.NextDouble() * 20 - 10).ToArray();
        var f16Source = Enumerable.Range(0, 5).Select(_ => (float)random.NextDouble() * 200 - 100).ToArray();
        var f16 = new Half[f16Source.Length];
        TensorPrimitives.ConvertToHalf(f16Source, f16);
        var bf16Source = Enumerable.Range(0, 12).Select(_ => (float)random.NextDouble() * 2 - 1).ToArray();

        SafetensorsWriter.Write(path,
        [
            new("b.f16", TensorDType.F16, [5], MemoryMarshal.AsBytes(f16.AsSpan()).ToArray()),
            new("a.f32", TensorDType.F32, [2, 3], MemoryMarshal.AsBytes(f32.AsSpan()).ToArray()),
            new("c.bf16", TensorDType.BF16, [3, 1, 4], SafetensorsWriter.ToBFloat16(bf16Source)),
            new("d.scalar", TensorDType.F32, [], BitConverter.GetBytes(7.5f)),
            new("e.empty", TensorDType.BF16, [0, 4], Array.Empty<byte>()),
        ]);

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(["a.f32", "b.f16", "c.bf16", "d.scalar", "e.empty"], file.Tensors.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(TensorDType.F16, file.Tensors["b.f16"].DType);
        Assert.Equal([3L, 1, 4], file.Tensors["c.bf16"].Shape);
        Assert.Empty(file.Tensors["d.scalar"].Shape);

        Assert.Equal(f32, Read(file, "a.f32"));
        Assert.Equal(f16.Select(h => (float)h), Read(file, "b.f16"));
        Assert.Equal(bf16Source.Select(RoundToBFloat16), Read(file, "c.bf16"));
        Assert.Equal([7.5f], Read(file, "d.scalar"));
        Assert.Empty(Read(file, "e.empty"));
    }

    [Fact]
    public void Bf16_conversion_is_a_16_bit_shift_for_every_length_and_bit_pattern()
    {
        using var dir = new TempDirectory();
        var index = 0;
        Gen.UShort.Array[0, 300].Sample(bits =>
        {
            var path = dir.File($"p{index++}.safetensors");
            SafetensorsWriter.Write(path, [new("x", TensorDType.BF16, [bits.Length], MemoryMarshal.AsBytes(bits.AsSpan()).ToArray())]);
            using var file = SafetensorsFile.Open(path);
            var values = Read(file, "x");
            Assert.Equal(bits.Select(b => (uint)b << 16), values.Select(BitConverter.SingleToUInt32Bits));
        }, iter: 60);
    }

    [Fact]
    public void Header_is_sorted_carries_format_metadata_and_is_padded_to_8_bytes()
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.safetensors");
        SafetensorsWriter.Write(path,
        [
            new("zeta", TensorDType.F32, [1], BitConverter.GetBytes(2f)),
            new("alpha", TensorDType.F32, [1], BitConverter.GetBytes(1f)),
            new("Mid", TensorDType.F32, [1], BitConverter.GetBytes(3f)),
        ]);

        var bytes = File.ReadAllBytes(path);
        var headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, headerLength % 8);
        var header = Encoding.UTF8.GetString(bytes, 8, headerLength);
        Assert.StartsWith("""{"__metadata__":{"format":"pt"},""", header);
        Assert.EndsWith("}", header.TrimEnd(' '));
        using var json = JsonDocument.Parse(header);
        Assert.Equal(["__metadata__", "Mid", "alpha", "zeta"], json.RootElement.EnumerateObject().Select(p => p.Name));
        var data = bytes.AsSpan(8 + headerLength);
        Assert.Equal([3f, 1f, 2f], MemoryMarshal.Cast<byte, float>(data).ToArray());
    }

    [Fact]
    public void Output_does_not_depend_on_input_order()
    {
        using var dir = new TempDirectory();
        TensorToWrite[] tensors =
        [
            new("b", TensorDType.BF16, [2], SafetensorsWriter.ToBFloat16([1f, 2f])),
            new("a", TensorDType.F32, [1], BitConverter.GetBytes(3f)),
        ];
        SafetensorsWriter.Write(dir.File("1.safetensors"), tensors);
        SafetensorsWriter.Write(dir.File("2.safetensors"), tensors.Reverse().ToArray());
        Assert.Equal(File.ReadAllBytes(dir.File("1.safetensors")), File.ReadAllBytes(dir.File("2.safetensors")));
    }

    [Fact]
    public void Writer_rejects_data_that_does_not_match_the_shape_and_repeated_names()
    {
        using var dir = new TempDirectory();
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(
            dir.File("t.safetensors"), [new("x", TensorDType.BF16, [3], new byte[4])]));
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(
            dir.File("t.safetensors"),
            [new("x", TensorDType.F32, [1], new byte[4]), new("x", TensorDType.F32, [1], new byte[4])]));
    }

    [Fact]
    public void Reading_into_a_destination_of_the_wrong_length_throws()
    {
        using var dir = new TempDirectory();
        var path = dir.File("t.safetensors");
        SafetensorsWriter.Write(path, [new("x", TensorDType.F32, [2], new byte[8])]);
        using var file = SafetensorsFile.Open(path);
        Assert.Throws<ArgumentException>(() => file.ReadAsFloat32("x", new float[3]));
        var missing = Assert.Throws<CheckpointException>(() => file.ReadAsFloat32("y", new float[2]));
        Assert.Equal("y", missing.Field);
    }

    private static float[] Read(SafetensorsFile file, string name)
    {
        var values = new float[file.Tensors[name].Shape.Aggregate(1L, (a, b) => a * b)];
        file.ReadAsFloat32(name, values);
        return values;
    }

    private static float RoundToBFloat16(float value) =>
        BitConverter.UInt32BitsToSingle((uint)BFloat16Reference.Round(value) << 16);
}
