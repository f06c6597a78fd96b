using System.Buffers;
using RouteReplay.Cache;

namespace RouteReplay.Storage;

/// <summary>
/// One request's lookup of a run of consecutive full blocks: the blocks' keys, parent keys and token ids (fixed on
/// the step thread when the lookup starts), and the verified values of the run's leading blocks once it completes.
/// </summary>
public sealed class StoreLoad
{
    internal StoreLoad(object owner, long epoch, UInt128 fingerprint, BlockKey parent, ReadOnlySpan<int> tokenIds, int blockSize)
    {
        Owner = owner;
        Epoch = epoch;
        Fingerprint = fingerprint;
        BlockSize = blockSize;
        TokenIds = tokenIds.ToArray();
        var count = tokenIds.Length / blockSize;
        Keys = new BlockKey[count];
        Parents = new BlockKey[count];
        Values = new IMemoryOwner<byte>?[count];
        for (var b = 0; b < count; b++)
        {
            Parents[b] = parent;
            parent = Keys[b] = BlockKey.Chain(parent, BlockTokens(b));
        }
    }

    /// <summary>Who asked (the engine's sequence), told when the load completes.</summary>
    public object Owner { get; }

    /// <summary>The tier's epoch when the lookup started; a flush or weight update makes the result stale.</summary>
    public long Epoch { get; }

    public UInt128 Fingerprint { get; }

    public int BlockSize { get; }

    public int BlockCount => Keys.Length;

    public BlockKey[] Keys { get; }

    public BlockKey[] Parents { get; }

    internal int[] TokenIds { get; }

    /// <summary>Verified values of blocks <c>[0, Loaded)</c>; the run stops at the first block that failed.</summary>
    internal IMemoryOwner<byte>?[] Values { get; }

    /// <summary>Leading blocks whose values were read and verified.</summary>
    public int Loaded { get; internal set; }

    internal long StartedAt { get; init; }

    public ReadOnlySpan<int> BlockTokens(int block) => TokenIds.AsSpan(block * BlockSize, BlockSize);

    internal void DisposeValues()
    {
        for (var i = 0; i < Values.Length; i++)
        {
            Values[i]?.Dispose();
            Values[i] = null;
        }
    }
}
