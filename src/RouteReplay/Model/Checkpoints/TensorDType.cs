namespace RouteReplay.Model.Checkpoints;

/// <summary>The floating-point element types RouteReplay reads from and writes to safetensors files.</summary>
public enum TensorDType
{
    /// <summary>IEEE 754 binary32 (safetensors <c>F32</c>).</summary>
    F32,

    /// <summary>IEEE 754 binary16 (safetensors <c>F16</c>).</summary>
    F16,

    /// <summary>bfloat16: the upper 16 bits of a binary32 (safetensors <c>BF16</c>).</summary>
    BF16,

    /// <summary>Unsigned bytes (safetensors <c>U8</c>): packed quantised data such as MXFP4 blocks and scales, never read as floats.</summary>
    U8,
}
