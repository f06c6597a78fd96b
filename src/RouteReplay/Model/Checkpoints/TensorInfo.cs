namespace RouteReplay.Model.Checkpoints;

/// <summary>One tensor's entry in a safetensors header.</summary>
/// <param name="Name">The tensor name, e.g. <c>model.layers.0.self_attn.q_proj.weight</c>.</param>
/// <param name="DType">The stored element type.</param>
/// <param name="Shape">The dimensions, outermost first (C order).</param>
/// <param name="DataOffset">The first byte of the tensor, relative to the start of the file's data section.</param>
/// <param name="ByteLength">The number of bytes the tensor occupies.</param>
public sealed record TensorInfo(string Name, TensorDType DType, long[] Shape, long DataOffset, long ByteLength)
{
    /// <summary>The number of elements (the product of <see cref="Shape"/>; 1 for a scalar).</summary>
    public long ElementCount => TensorShapes.ElementCount(Shape);
}
