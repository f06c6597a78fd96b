using RouteReplay.Model.Checkpoints;
using RouteReplay.Routing;

namespace RouteReplay.Backends;

/// <summary>Runs the model's forward pass over a paged KV cache that the backend owns.</summary>
/// <remarks>
/// Ordering. A backend runs forwards and block copies in the order they are called (a GPU backend queues them all on
/// one stream, so stream order is the fence): a copy into a block completes before any later forward reads it, and a
/// copy out of a block reads it before any later forward overwrites it. The asynchronous copies
/// (<see cref="CopyBlocksToHost"/>, <see cref="CopyBlocksToDevice"/>) leave host memory undefined until
/// <see cref="Synchronize"/> returns or the next <see cref="Forward"/> returns; the synchronous ones
/// (<see cref="ReadBlockKv"/>, <see cref="WriteBlockKv"/>) are complete on return.
/// </remarks>
public interface IModelBackend : IDisposable
{
    ModelConfig Config { get; }

    RoutingFormat RoutingFormat { get; }

    int BlockSize { get; }

    /// <summary>
    /// The size of the KV pool in blocks. The engine sizes its block pool from this: a CPU backend uses
    /// <see cref="Engine.EngineOptions.ResolvedNumBlocks"/>, a GPU backend what fits the device's memory.
    /// </summary>
    int NumBlocks { get; }

    /// <summary>
    /// Computes every token of <paramref name="batch"/>: writes each token's KV to its slot, its routing row to
    /// <see cref="ForwardBatch.RoutingRow"/> (when <see cref="ForwardBatch.CaptureRouting"/>) and the logits of the
    /// requested tokens to <see cref="ForwardBatch.LogitRow"/>. Outputs are complete on return.
    /// </summary>
    void Forward(ForwardBatch batch);

    /// <summary>The element type the KV cache stores: part of the payload layout, so of every block's identity.</summary>
    TensorDType KvDType { get; }

    /// <summary>Bytes of KV one block holds across all layers: the KV part of a block's payload.</summary>
    int KvBytesPerBlock { get; }

    /// <summary>Copies a block's KV (every layer, K and V) into <paramref name="destination"/>; complete on return.</summary>
    void ReadBlockKv(int block, Span<byte> destination);

    /// <summary>Overwrites a block's KV (every layer, K and V) from <paramref name="source"/>; complete on return.</summary>
    void WriteBlockKv(int block, ReadOnlySpan<byte> source);

    /// <summary>Host memory this backend copies to and from without staging (page-locked on a GPU).</summary>
    HostBuffer AllocateHostBuffer(long bytes) => NativeHostBuffer.Allocate(bytes);

    /// <summary>
    /// Starts copying the KV of <c>blocks[i]</c> to <see cref="KvBytesPerBlock"/> bytes at <c>destinations[i]</c>,
    /// an address inside a <see cref="HostBuffer"/> from <see cref="AllocateHostBuffer"/>. The bytes are there once
    /// <see cref="Synchronize"/> or the next <see cref="Forward"/> returns.
    /// </summary>
    unsafe void CopyBlocksToHost(ReadOnlySpan<int> blocks, ReadOnlySpan<nint> destinations)
    {
        for (var i = 0; i < blocks.Length; i++)
        {
            ReadBlockKv(blocks[i], new Span<byte>((void*)destinations[i], KvBytesPerBlock));
        }
    }

    /// <summary>
    /// Starts copying <see cref="KvBytesPerBlock"/> bytes at <c>sources[i]</c> (inside a buffer from
    /// <see cref="AllocateHostBuffer"/>) over the KV of <c>blocks[i]</c>, ahead of any later forward. The source
    /// bytes must stay unchanged until <see cref="Synchronize"/> or the next <see cref="Forward"/> returns, except by
    /// later copies of this backend, which are ordered after it.
    /// </summary>
    unsafe void CopyBlocksToDevice(ReadOnlySpan<nint> sources, ReadOnlySpan<int> blocks)
    {
        for (var i = 0; i < blocks.Length; i++)
        {
            WriteBlockKv(blocks[i], new ReadOnlySpan<byte>((void*)sources[i], KvBytesPerBlock));
        }
    }

    /// <summary>Waits for every copy and forward started so far.</summary>
    void Synchronize()
    {
    }
}
