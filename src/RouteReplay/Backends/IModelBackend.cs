using RouteReplay.Model.Checkpoints;
using RouteReplay.Routing;

namespace RouteReplay.Backends;

/// <summary>Runs the model's forward pass over a paged KV cache that the backend owns.</summary>
public interface IModelBackend : IDisposable
{
    ModelConfig Config { get; }

    RoutingFormat RoutingFormat { get; }

    int BlockSize { get; }

    int NumBlocks { get; }

    /// <summary>
    /// Computes every token of <paramref name="batch"/>: writes each token's KV to its slot, its routing row to
    /// <see cref="ForwardBatch.Routing"/> and the logits of the requested tokens to <see cref="ForwardBatch.Logits"/>.
    /// </summary>
    void Forward(ForwardBatch batch);

    /// <summary>The element type the KV cache stores: part of the payload layout, so of every block's identity.</summary>
    TensorDType KvDType { get; }

    /// <summary>Bytes of KV one block holds across all layers: the KV part of a block's payload.</summary>
    int KvBytesPerBlock { get; }

    /// <summary>Copies a block's KV (every layer, K and V) into <paramref name="destination"/>.</summary>
    void ReadBlockKv(int block, Span<byte> destination);

    /// <summary>Overwrites a block's KV (every layer, K and V) from <paramref name="source"/>.</summary>
    void WriteBlockKv(int block, ReadOnlySpan<byte> source);
}
