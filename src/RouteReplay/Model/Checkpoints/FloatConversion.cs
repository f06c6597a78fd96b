using System.Buffers.Binary;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace RouteReplay.Model.Checkpoints;

/// <summary>Conversions between little-endian stored elements (bf16, f16, f32) and fp32.</summary>
internal static class FloatConversion
{
    /// <summary>Converts <paramref name="source"/> (little-endian elements of <paramref name="dtype"/>) to fp32.</summary>
    public static void ToFloat32(TensorDType dtype, ReadOnlySpan<byte> source, Span<float> destination)
    {
        switch (dtype)
        {
            case TensorDType.BF16:
                BFloat16ToFloat32(source, destination);
                break;
            case TensorDType.F16:
                Float16ToFloat32(source, destination);
                break;
            case TensorDType.F32:
                Float32ToFloat32(source, destination);
                break;
            case TensorDType.U8:
                throw new InvalidDataException("a U8 tensor holds packed quantised data, not numbers to read as floats");
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown tensor dtype");
        }
    }

    /// <summary>bf16 to fp32 is a 16-bit left shift of the bit pattern.</summary>
    public static void BFloat16ToFloat32(ReadOnlySpan<byte> source, Span<float> destination)
    {
        CheckLengths(source, destination, sizeof(ushort));
        var count = destination.Length;
        var i = 0;
        if (BitConverter.IsLittleEndian && Vector.IsHardwareAccelerated)
        {
            var halves = MemoryMarshal.Cast<byte, ushort>(source);
            ref var input = ref MemoryMarshal.GetReference(halves);
            ref var output = ref MemoryMarshal.GetReference(destination);
            var step = Vector<ushort>.Count;
            var half = Vector<uint>.Count;
            for (; i <= count - step; i += step)
            {
                var bits = Vector.LoadUnsafe(ref input, (nuint)i);
                Vector.Widen(bits, out var low, out var high);
                Vector.AsVectorSingle(low << 16).StoreUnsafe(ref output, (nuint)i);
                Vector.AsVectorSingle(high << 16).StoreUnsafe(ref output, (nuint)(i + half));
            }
        }
        for (; i < count; i++)
        {
            var bits = BinaryPrimitives.ReadUInt16LittleEndian(source[(i * 2)..]);
            destination[i] = BitConverter.UInt32BitsToSingle((uint)bits << 16);
        }
    }

    public static void Float16ToFloat32(ReadOnlySpan<byte> source, Span<float> destination)
    {
        CheckLengths(source, destination, 2);
        if (BitConverter.IsLittleEndian)
        {
            TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), destination);
            return;
        }
        for (var i = 0; i < destination.Length; i++)
        {
            destination[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(source[(i * 2)..]);
        }
    }

    public static void Float32ToFloat32(ReadOnlySpan<byte> source, Span<float> destination)
    {
        CheckLengths(source, destination, sizeof(float));
        if (BitConverter.IsLittleEndian)
        {
            MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);
            return;
        }
        for (var i = 0; i < destination.Length; i++)
        {
            destination[i] = BinaryPrimitives.ReadSingleLittleEndian(source[(i * 4)..]);
        }
    }

    /// <summary>Rounds one fp32 value to the nearest bf16 bit pattern (ties to even); NaN stays a quiet NaN.</summary>
    public static ushort ToBFloat16Bits(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x0040);
        }
        var roundingBias = 0x7FFFu + ((bits >> 16) & 1);
        return (ushort)((bits + roundingBias) >> 16);
    }

    /// <summary>Rounds fp32 values to bf16 (ties to even) and stores them little-endian.</summary>
    public static void Float32ToBFloat16(ReadOnlySpan<float> source, Span<byte> destination)
    {
        if (destination.Length != source.Length * sizeof(ushort))
        {
            throw new ArgumentException(
                $"destination holds {destination.Length} bytes, but {source.Length} bf16 values need {source.Length * 2}",
                nameof(destination));
        }
        for (var i = 0; i < source.Length; i++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(destination[(i * 2)..], ToBFloat16Bits(source[i]));
        }
    }

    private static void CheckLengths(ReadOnlySpan<byte> source, Span<float> destination, int elementSize)
    {
        if (source.Length != (long)destination.Length * elementSize)
        {
            throw new ArgumentException(
                $"source holds {source.Length} bytes, but {destination.Length} elements of {elementSize} bytes need {(long)destination.Length * elementSize}",
                nameof(destination));
        }
    }
}
