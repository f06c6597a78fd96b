namespace RouteReplay.Backends;

/// <summary>
/// A bf16 tensor another process on this machine shares through CUDA IPC: its checkpoint name and shape, the
/// <see cref="HandleBytes"/>-byte <c>cudaIpcMemHandle_t</c> of the allocation holding it, and where in that allocation
/// it starts (several tensors usually share one allocation). Its elements are contiguous.
/// </summary>
public sealed record IpcTensor(string Name, long[] Shape, byte[] Handle, long OffsetBytes)
{
    /// <summary>The size of a <c>cudaIpcMemHandle_t</c>.</summary>
    public const int HandleBytes = 64;
}
