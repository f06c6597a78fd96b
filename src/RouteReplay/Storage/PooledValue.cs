using System.Buffers;

namespace RouteReplay.Storage;

/// <summary>A value of an exact length in a rented array, returned to the pool on dispose.</summary>
internal sealed class PooledValue : IMemoryOwner<byte>
{
    private byte[]? _array;

    public PooledValue(int length)
    {
        _array = ArrayPool<byte>.Shared.Rent(length);
        Length = length;
    }

    public int Length { get; }

    public Memory<byte> Memory => (_array ?? throw new ObjectDisposedException(nameof(PooledValue))).AsMemory(0, Length);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _array, null) is { } array)
        {
            ArrayPool<byte>.Shared.Return(array);
        }
    }
}
