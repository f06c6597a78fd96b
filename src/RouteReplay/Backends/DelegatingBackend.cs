using RouteReplay.Model.Checkpoints;
using RouteReplay.Routing;

namespace RouteReplay.Backends;

/// <summary>
/// A backend that passes every call to <see cref="Inner"/>, the KV copies and host buffers included, so a wrapper
/// that observes or alters a step (override <see cref="Forward"/>) runs on the inner backend's own copy paths.
/// Disposing it disposes the inner backend.
/// </summary>
public abstract class DelegatingBackend(IModelBackend inner) : IModelBackend
{
    public IModelBackend Inner { get; } = inner ?? throw new ArgumentNullException(nameof(inner));

    public ModelConfig Config => Inner.Config;

    public RoutingFormat RoutingFormat => Inner.RoutingFormat;

    public int BlockSize => Inner.BlockSize;

    public int NumBlocks => Inner.NumBlocks;

    public TensorDType KvDType => Inner.KvDType;

    public int KvBytesPerBlock => Inner.KvBytesPerBlock;

    public virtual void Forward(ForwardBatch batch) => Inner.Forward(batch);

    public void ReadBlockKv(int block, Span<byte> destination) => Inner.ReadBlockKv(block, destination);

    public void WriteBlockKv(int block, ReadOnlySpan<byte> source) => Inner.WriteBlockKv(block, source);

    public HostBuffer AllocateHostBuffer(long bytes) => Inner.AllocateHostBuffer(bytes);

    public void CopyBlocksToHost(ReadOnlySpan<int> blocks, ReadOnlySpan<nint> destinations) => Inner.CopyBlocksToHost(blocks, destinations);

    public void CopyBlocksToDevice(ReadOnlySpan<nint> sources, ReadOnlySpan<int> blocks) => Inner.CopyBlocksToDevice(sources, blocks);

    public void Synchronize() => Inner.Synchronize();

    public void Dispose()
    {
        Inner.Dispose();
        GC.SuppressFinalize(this);
    }
}
