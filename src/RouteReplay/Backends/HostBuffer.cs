using System.Runtime.InteropServices;

namespace RouteReplay.Backends;

/// <summary>
/// Host memory that a backend can copy to and from without staging: page-locked memory on a GPU backend, plain
/// page-aligned memory otherwise (<see cref="IModelBackend.AllocateHostBuffer"/>). Its contents are undefined until
/// written; it is never moved by the garbage collector and is freed on dispose or finalization.
/// </summary>
public abstract class HostBuffer : SafeHandle
{
    protected HostBuffer(nint address, long length)
        : base(0, ownsHandle: true)
    {
        SetHandle(address);
        Length = length;
    }

    public long Length { get; }

    public nint Address => handle;

    public override bool IsInvalid => handle == 0;

    /// <summary><paramref name="count"/> elements starting <paramref name="byteOffset"/> bytes into the buffer.</summary>
    public unsafe Span<T> AsSpan<T>(long byteOffset, int count)
        where T : unmanaged
    {
        ObjectDisposedException.ThrowIf(IsClosed, this);
        if (byteOffset < 0 || count < 0 || byteOffset + ((long)count * sizeof(T)) > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(count), $"{count} elements at byte {byteOffset} do not fit a buffer of {Length} bytes");
        }
        return new Span<T>((byte*)handle + byteOffset, count);
    }
}

/// <summary>Page-aligned memory from the native heap: what a CPU backend needs.</summary>
public sealed class NativeHostBuffer : HostBuffer
{
    private NativeHostBuffer(nint address, long length)
        : base(address, length)
    {
    }

    public static unsafe NativeHostBuffer Allocate(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        var size = (nuint)Math.Max(bytes, 1);
        return new NativeHostBuffer((nint)NativeMemory.AlignedAlloc(size, 4096), bytes);
    }

    protected override unsafe bool ReleaseHandle()
    {
        NativeMemory.AlignedFree((void*)handle);
        return true;
    }
}
