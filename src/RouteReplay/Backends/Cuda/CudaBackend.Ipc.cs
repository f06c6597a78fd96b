namespace RouteReplay.Backends.Cuda;

/// <summary>Weights copied device to device from tensors another process shares through CUDA IPC.</summary>
public sealed partial class CudaBackend
{
    /// <summary>
    /// Copies <paramref name="weights"/> into their places in the weights, opening each distinct handle once; nothing is
    /// copied unless every handle opens and every range fits. Released weights are allocated again first: with their
    /// host copy copied back when the tensors are only part of the model, else without. Weights discarded at release
    /// (no host copy) take only a complete set.
    /// </summary>
    /// <exception cref="ArgumentException">
    /// A handle does not open or a tensor lies outside its allocation (parameter <c>tensors</c>); or the weights were
    /// discarded and the tensors are not all of them. The weights are as before, except that replaced ones lost at release stay lost.
    /// </exception>
    private unsafe void ApplyIpcWeights(IpcWeights weights)
    {
        if (Weights == WeightsResidence.Discarded && !weights.IsComplete)
        {
            throw new ArgumentException(
                "the weights were discarded at release (level 2) and these tensors are only part of the model: send every weight in one request", "tensors");
        }
        var copyBack = Weights == WeightsResidence.HostCopy && !weights.IsComplete;
        var allocatedEmpty = Weights != WeightsResidence.Resident && !copyBack;
        if (Weights != WeightsResidence.Resident)
        {
            CudaNative.Check(CudaNative.WeightsRestore(_model, copyBack ? 1 : 0), "allocating the weights for shared ones");
            Weights = WeightsResidence.Resident;
        }
        var handles = new List<byte[]>();
        var handleIndexOf = new Dictionary<string, int>(StringComparer.Ordinal);
        var count = weights.Copies.Count;
        var handleIndex = new int[count];
        var sourceOffsets = new ulong[count];
        var destinations = new nint[count];
        var bytes = new ulong[count];
        for (var i = 0; i < count; i++)
        {
            var (source, target) = weights.Copies[i];
            var key = Convert.ToHexString(source.Handle);
            if (!handleIndexOf.TryGetValue(key, out var index))
            {
                index = handles.Count;
                handleIndexOf[key] = index;
                handles.Add(source.Handle);
            }
            handleIndex[i] = index;
            sourceOffsets[i] = (ulong)source.OffsetBytes;
            destinations[i] = Locate(target).Device;
            bytes[i] = (ulong)(target.Elements * 2);
        }
        var packed = handles.SelectMany(handle => handle).ToArray();
        int status;
        fixed (byte* handlesPointer = packed)
        fixed (int* handleIndexPointer = handleIndex)
        fixed (ulong* sourceOffsetsPointer = sourceOffsets)
        fixed (nint* destinationsPointer = destinations)
        fixed (ulong* bytesPointer = bytes)
        {
            status = CudaNative.CopyFromIpc(_model, handlesPointer, handles.Count, handleIndexPointer, sourceOffsetsPointer, destinationsPointer, bytesPointer, count);
        }
        if (status == CudaNative.Ok)
        {
            return;
        }
        if (allocatedEmpty)
        {
            Weights = WeightsResidence.Discarded;
        }
        try
        {
            CudaNative.Check(status, $"copying {count} shared tensors from {handles.Count} CUDA IPC handles");
        }
        catch (CudaException e)
        {
            throw new ArgumentException(e.Message, "tensors", e);
        }
    }
}
