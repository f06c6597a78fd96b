using System.Runtime.InteropServices;

namespace RouteReplay.Backends.Cuda;

/// <summary>Owns one native rr_model: its weights, KV cache, step buffers, stream and cuBLAS handle.</summary>
internal sealed class CudaModelHandle : SafeHandle
{
    public CudaModelHandle(nint model)
        : base(0, ownsHandle: true) => SetHandle(model);

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        CudaNative.ModelDestroy(handle);
        return true;
    }
}

/// <summary>Page-locked host memory from the CUDA runtime, which the GPU copies to and from by DMA.</summary>
internal sealed class PageLockedHostBuffer : HostBuffer
{
    private PageLockedHostBuffer(nint address, long length)
        : base(address, length)
    {
    }

    public static PageLockedHostBuffer Allocate(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        CudaNative.Check(CudaNative.HostAlloc((ulong)Math.Max(bytes, 1), out var address), $"allocating {bytes} bytes of page-locked host memory");
        return new PageLockedHostBuffer(address, bytes);
    }

    protected override bool ReleaseHandle()
    {
        CudaNative.HostFree(handle);
        return true;
    }
}

/// <summary>
/// Keeps a host buffer's memory alive while native code uses its address (a SafeHandle reference), so a buffer disposed
/// on another thread meanwhile is freed only after the native call returns.
/// </summary>
internal ref struct HandleReference
{
    private readonly SafeHandle _handle;
    private bool _added;

    public HandleReference(SafeHandle handle)
    {
        _handle = handle;
        handle.DangerousAddRef(ref _added);
        Address = handle.DangerousGetHandle();
    }

    public nint Address { get; }

    public void Dispose()
    {
        if (_added)
        {
            _handle.DangerousRelease();
            _added = false;
        }
    }
}
