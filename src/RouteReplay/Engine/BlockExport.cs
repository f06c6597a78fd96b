using System.Buffers;
using System.Threading.Channels;
using RouteReplay.Cache;

namespace RouteReplay.Engine;

/// <summary>
/// One request's prompt blocks leaving a prefill engine for a decode engine (the other end of a
/// <see cref="BlockImport"/>). A request with an export computes its prompt, samples each choice's first token and
/// ends; its choices share the first choice's prompt blocks (computed once), each computing only the block of its last
/// prompt token. As steps finish, the step thread copies payloads out (through the <see cref="PayloadCopier"/>) and
/// posts <see cref="Items"/>, in the order a <see cref="BlockImport"/> takes them: the agreement on the decode
/// engine's held blocks, each shared block from there on as soon as it is computed, each choice's last block with its
/// first token, then the end. A reader on another thread seals and sends them.
/// </summary>
/// <remarks>
/// Holds: the export takes a reference to each block it hands out (and to the shared blocks the later choices use), so
/// they stay intact after the request has ended, until <see cref="LlmEngine.ReleaseExport"/> gives them back (the peer
/// acknowledged, or it is gone); hashed blocks then stay in the prefix cache like any released block. A request that
/// ends before its export is complete (aborted, failed) posts <see cref="ExportFailed"/> and lets go of its holds at once.
/// </remarks>
public sealed class BlockExport
{
    private readonly Channel<ExportItem> _items = Channel.CreateUnbounded<ExportItem>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    /// <param name="heldBlocks">Leading full prompt blocks the decode engine already holds.</param>
    /// <param name="heldRowDigests">Per held block, its <see cref="PayloadCopier.RowsDigest"/> on the decode engine.</param>
    public BlockExport(int heldBlocks, IReadOnlyList<UInt128> heldRowDigests)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(heldBlocks);
        ArgumentNullException.ThrowIfNull(heldRowDigests);
        if (heldRowDigests.Count != heldBlocks)
        {
            throw new ArgumentException($"{heldBlocks} held blocks need as many row digests, not {heldRowDigests.Count}", nameof(heldRowDigests));
        }
        HeldBlocks = heldBlocks;
        HeldRowDigests = heldRowDigests;
    }

    public int HeldBlocks { get; }

    public IReadOnlyList<UInt128> HeldRowDigests { get; }

    /// <summary>What to send, in order; completed after <see cref="ExportCompleted"/> or <see cref="ExportFailed"/>.</summary>
    public ChannelReader<ExportItem> Items => _items.Reader;

    /// <summary>Blocks the export holds a reference to (step thread).</summary>
    public int HeldBlockCount => Held.Count;

    internal List<int> Held { get; } = [];

    internal BlockKey[] Keys { get; private set; } = [];

    internal BlockKey Root { get; private set; }

    internal int SharedBlocks { get; private set; }

    internal int BlockSize { get; private set; }

    /// <summary>Kept held blocks, once agreed (-1 before).</summary>
    internal int Agreed { get; set; } = -1;

    /// <summary>The next shared block to post.</summary>
    internal int NextBlock { get; set; }

    /// <summary>The first choice's shared prompt blocks, held for the later choices once it has computed its prompt.</summary>
    internal int[]? PromptBlocks { get; set; }

    internal int ChoicesPosted { get; set; }

    internal bool Ended { get; private set; }

    internal bool Released { get; set; }

    /// <summary>The request computing the export's blocks.</summary>
    internal RequestState? Owner { get; set; }

    /// <summary>Binds the export to its request's prompt (on <see cref="LlmEngine.AddRequest"/>): block keys from the engine's root.</summary>
    internal void Attach(IReadOnlyList<int> prompt, BlockKey root, int blockSize)
    {
        if (Keys.Length > 0 || Root != default)
        {
            throw new ArgumentException("an export serves one request only", "request");
        }
        BlockSize = blockSize;
        Root = root;
        SharedBlocks = (prompt.Count - 1) / blockSize;
        if (HeldBlocks > SharedBlocks)
        {
            throw new ArgumentException($"the decode engine holds {HeldBlocks} prompt blocks but the prompt has {SharedBlocks} full blocks before its last token's", "held_blocks");
        }
        Keys = new BlockKey[SharedBlocks + 1];
        var parent = root;
        var tokens = new int[blockSize];
        for (var b = 0; b <= SharedBlocks && (b + 1) * blockSize <= prompt.Count; b++)
        {
            for (var i = 0; i < blockSize; i++)
            {
                tokens[i] = prompt[(b * blockSize) + i];
            }
            parent = Keys[b] = BlockKey.Chain(parent, tokens);
        }
    }

    internal BlockKey KeyBefore(int block) => block == 0 ? Root : Keys[block - 1];

    internal void Post(ExportItem item)
    {
        if (!_items.Writer.TryWrite(item))
        {
            (item as ExportPayload)?.Block.Dispose();
        }
        if (item is ExportCompleted or ExportFailed)
        {
            Ended = true;
            _items.Writer.TryComplete();
        }
    }
}

/// <summary>One thing a <see cref="BlockExport"/> posts for its reader.</summary>
public abstract record ExportItem;

/// <summary>The first <paramref name="Blocks"/> held blocks of the decode engine agree with this engine's, row for row: they are not sent.</summary>
public sealed record ExportAgreed(int Blocks) : ExportItem;

/// <summary>An item carrying a block's value; the reader disposes it once sent.</summary>
public abstract record ExportPayload(OutgoingBlock Block) : ExportItem;

/// <summary>Shared prompt block <paramref name="Index"/>.</summary>
public sealed record ExportBlock(int Index, OutgoingBlock Block) : ExportPayload(Block);

/// <summary>A choice's last prompt block, the first token sampled from it, its logprob (when asked) and the sampler's state after it.</summary>
public sealed record ExportChoice(int Choice, OutgoingBlock Block, int Token, TokenLogprob? Logprob, ulong RandomState) : ExportPayload(Block);

/// <summary>Every choice is out; <paramref name="CachedTokens"/> prompt tokens came from this engine's prefix cache.</summary>
public sealed record ExportCompleted(int CachedTokens) : ExportItem;

/// <summary>The request ended before its export was complete.</summary>
public sealed record ExportFailed(Exception Error) : ExportItem;

/// <summary>
/// A block's value on its way out: the payload copied into place (<see cref="PayloadCodec.PayloadRange"/>) on the step
/// thread, the header and checksum written by <see cref="Seal"/> on the sender's thread.
/// </summary>
public sealed class OutgoingBlock(PayloadHeader header, int[] tokenIds, IMemoryOwner<byte> value) : IDisposable
{
    public PayloadHeader Header { get; } = header;

    public IReadOnlyList<int> TokenIds => tokenIds;

    /// <summary>Writes header and checksum around the payload and returns the whole encoded value.</summary>
    public ReadOnlyMemory<byte> Seal(PayloadCodec codec)
    {
        ArgumentNullException.ThrowIfNull(codec);
        codec.Seal(Header, tokenIds, value.Memory.Span);
        return value.Memory;
    }

    public void Dispose() => value.Dispose();
}
