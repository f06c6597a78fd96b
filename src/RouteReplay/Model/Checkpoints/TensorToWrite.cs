namespace RouteReplay.Model.Checkpoints;

/// <summary>One tensor for <see cref="SafetensorsWriter"/>.</summary>
/// <param name="Name">The tensor name.</param>
/// <param name="DType">The element type of <paramref name="Data"/>.</param>
/// <param name="Shape">The dimensions, outermost first (C order).</param>
/// <param name="Data">The elements, little-endian, exactly product(shape) times the dtype size bytes.</param>
public sealed record TensorToWrite(string Name, TensorDType DType, long[] Shape, ReadOnlyMemory<byte> Data);
