namespace RouteReplay.Model.Checkpoints;

/// <summary>Sizes and safetensors spellings of <see cref="TensorDType"/>.</summary>
internal static class TensorDTypes
{
    public static int SizeOf(TensorDType dtype) => dtype switch
    {
        TensorDType.F32 => 4,
        TensorDType.F16 => 2,
        TensorDType.BF16 => 2,
        TensorDType.U8 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown tensor dtype"),
    };

    public static string ToSafetensorsName(TensorDType dtype) => dtype switch
    {
        TensorDType.F32 => "F32",
        TensorDType.F16 => "F16",
        TensorDType.BF16 => "BF16",
        TensorDType.U8 => "U8",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown tensor dtype"),
    };

    public static bool TryParseSafetensorsName(string name, out TensorDType dtype)
    {
        switch (name)
        {
            case "F32":
                dtype = TensorDType.F32;
                return true;
            case "F16":
                dtype = TensorDType.F16;
                return true;
            case "BF16":
                dtype = TensorDType.BF16;
                return true;
            case "U8":
                dtype = TensorDType.U8;
                return true;
            default:
                dtype = default;
                return false;
        }
    }
}
