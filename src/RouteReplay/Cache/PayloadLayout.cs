using RouteReplay.Backends;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Cache;

/// <summary>One channel's entry in a payload layout: its name and the bytes of one slot's row.</summary>
public readonly record struct ChannelLayout(string Name, int RowBytes);

/// <summary>
/// What one block's payload holds, byte for byte, as <see cref="PayloadCopier"/> lays it out: the KV of every layer
/// (<see cref="KvBytesPerBlock"/> bytes of <see cref="KvDType"/> elements, logical shape
/// <c>[NumLayers, 2 (K, V), BlockSize, NumKvHeads, HeadDim]</c>; for multi-head latent attention
/// <c>[NumLayers, BlockSize, 1, HeadDim]</c>, the compressed latent and RoPE key only), then each channel's
/// <c>BlockSize</c> rows in registration order. Two engines can exchange payloads only when their layouts are equal, so the layout is part of
/// the <see cref="ModelFingerprint"/> and of every encoded value's header.
/// </summary>
public sealed record PayloadLayout
{
    public PayloadLayout(int blockSize, TensorDType kvDType, int numLayers, int numKvHeads, int headDim, int kvBytesPerBlock, IReadOnlyList<ChannelLayout> channels)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numLayers);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numKvHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        ArgumentOutOfRangeException.ThrowIfNegative(kvBytesPerBlock);
        ArgumentNullException.ThrowIfNull(channels);
        BlockSize = blockSize;
        KvDType = kvDType;
        NumLayers = numLayers;
        NumKvHeads = numKvHeads;
        HeadDim = headDim;
        KvBytesPerBlock = kvBytesPerBlock;
        Channels = channels.ToArray();
        long bytes = kvBytesPerBlock;
        foreach (var channel in Channels)
        {
            ArgumentException.ThrowIfNullOrEmpty(channel.Name, nameof(channels));
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(channel.RowBytes, nameof(channels));
            bytes += (long)blockSize * channel.RowBytes;
        }
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bytes, int.MaxValue / 2, nameof(channels));
        PayloadBytes = (int)bytes;
    }

    /// <summary>Tokens (slots) per block.</summary>
    public int BlockSize { get; }

    public TensorDType KvDType { get; }

    public int NumLayers { get; }

    public int NumKvHeads { get; }

    public int HeadDim { get; }

    /// <summary>Bytes of KV of one block across all layers, K and V.</summary>
    public int KvBytesPerBlock { get; }

    /// <summary>The channels whose rows follow the KV, in payload order.</summary>
    public IReadOnlyList<ChannelLayout> Channels { get; }

    /// <summary>Bytes of one whole block payload: KV plus every channel's rows.</summary>
    public int PayloadBytes { get; }

    /// <summary>The layout of the payloads <paramref name="backend"/> and <paramref name="channels"/> produce.</summary>
    public static PayloadLayout Of(IModelBackend backend, IReadOnlyList<BlockChannel> channels)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(channels);
        var config = backend.Config;
        return new PayloadLayout(
            backend.BlockSize,
            backend.KvDType,
            config.NumHiddenLayers,
            config.Mla is null ? config.NumKeyValueHeads : 1,
            config.Mla is null ? config.HeadDim : config.KeyCacheWidth,
            backend.KvBytesPerBlock,
            channels.Select(c => new ChannelLayout(c.Name, c.RowBytes)).ToArray());
    }

    public bool Equals(PayloadLayout? other) =>
        other is not null && BlockSize == other.BlockSize && KvDType == other.KvDType && NumLayers == other.NumLayers
        && NumKvHeads == other.NumKvHeads && HeadDim == other.HeadDim && KvBytesPerBlock == other.KvBytesPerBlock
        && Channels.SequenceEqual(other.Channels);

    public override int GetHashCode() => HashCode.Combine(BlockSize, KvDType, NumLayers, NumKvHeads, HeadDim, KvBytesPerBlock, Channels.Count);
}
