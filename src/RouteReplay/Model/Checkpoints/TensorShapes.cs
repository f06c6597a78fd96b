namespace RouteReplay.Model.Checkpoints;

/// <summary>Element counts and display of tensor shapes.</summary>
internal static class TensorShapes
{
    /// <summary>The product of the dimensions; throws <see cref="OverflowException"/> past <see cref="long.MaxValue"/>.</summary>
    public static long ElementCount(ReadOnlySpan<long> shape)
    {
        long count = 1;
        foreach (var dim in shape)
        {
            count = checked(count * dim);
        }
        return count;
    }

    public static string Format(ReadOnlySpan<long> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";
}
