using RouteReplay.Backends;

namespace RouteReplay.Cache;

/// <summary>
/// A per-slot auxiliary store: one fixed-size row for every KV slot, bound to the block like its KV. Routing is one
/// channel; others (e.g. the router's gate weights) subclass the same way. A channel holds only what the block's
/// tokens and the model determine, never per-request data, because blocks are shared between requests.
/// </summary>
/// <remarks>
/// Slot math: position <c>p</c> of a sequence lives in slot <c>blockTable[p / BlockSize] * BlockSize + p % BlockSize</c>,
/// and slot <c>s</c>'s row is row <c>s % BlockSize</c> of block <c>s / BlockSize</c>. A block's rows are contiguous, in
/// one of the channel's pinned arrays: whole blocks are laid out in chunks of at most <see cref="DefaultChunkBytes"/>,
/// so a channel holds any pool a device gives (more than one array's 2 GiB). Every byte starts as
/// <see cref="UnsetByte"/>, the unset sentinel; a block allocated without a prefix hit is reset to it before use, so a
/// row that no step wrote is detected instead of leaking the block's previous owner's data. Not thread-safe; the step
/// loop owns it.
/// </remarks>
public abstract class BlockChannel
{
    /// <summary>The byte an unset row is filled with; for routing, all-0xFF elements are the uint8/uint16 sentinel.</summary>
    public const byte UnsetByte = byte.MaxValue;

    /// <summary>The most bytes of one of the channel's arrays (1 GiB).</summary>
    public const long DefaultChunkBytes = 1L << 30;

    private readonly byte[][] _chunks;
    private readonly int _blocksPerChunk;
    private readonly int _blockBytes;

    /// <param name="name">The channel's name, unique within a pool.</param>
    /// <param name="rowBytes">Bytes of one slot's row.</param>
    /// <param name="numBlocks">Blocks in the pool.</param>
    /// <param name="blockSize">Slots per block.</param>
    /// <param name="maxChunkBytes">The most bytes of one array; whole blocks are packed into arrays of at most this size.</param>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive, or one block's rows exceed <paramref name="maxChunkBytes"/>.</exception>
    protected BlockChannel(string name, int rowBytes, int numBlocks, int blockSize, long maxChunkBytes = DefaultChunkBytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rowBytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numBlocks);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockSize);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxChunkBytes, DefaultChunkBytes);
        ArgumentOutOfRangeException.ThrowIfGreaterThan((long)numBlocks * blockSize, int.MaxValue, nameof(numBlocks));
        var blockBytes = (long)blockSize * rowBytes;
        if (blockBytes > maxChunkBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(rowBytes), rowBytes, $"channel '{name}': one block's rows would need {blockBytes} bytes, more than one array of {maxChunkBytes} bytes holds");
        }
        Name = name;
        RowBytes = rowBytes;
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        TotalBytes = numBlocks * blockBytes;
        _blockBytes = (int)blockBytes;
        _blocksPerChunk = (int)Math.Min(numBlocks, maxChunkBytes / blockBytes);
        _chunks = new byte[(numBlocks + _blocksPerChunk - 1) / _blocksPerChunk][];
        for (var c = 0; c < _chunks.Length; c++)
        {
            var blocks = Math.Min(_blocksPerChunk, numBlocks - (c * _blocksPerChunk));
            _chunks[c] = GC.AllocateUninitializedArray<byte>(blocks * _blockBytes, pinned: true);
            _chunks[c].AsSpan().Fill(UnsetByte);
        }
    }

    /// <summary>The channel's name, unique within a pool (e.g. <c>routing</c>).</summary>
    public string Name { get; }

    /// <summary>Bytes of one slot's row.</summary>
    public int RowBytes { get; }

    public int NumBlocks { get; }

    /// <summary>Slots per block (tokens per block).</summary>
    public int BlockSize { get; }

    /// <summary>Bytes the channel holds: <c>NumBlocks * BlockSize * RowBytes</c>.</summary>
    public long TotalBytes { get; }

    /// <summary>The row of slot <paramref name="slot"/>.</summary>
    public Span<byte> Row(int slot)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)slot, (uint)NumBlocks * (uint)BlockSize, nameof(slot));
        var block = slot / BlockSize;
        return BlockRows(block).Slice((slot - (block * BlockSize)) * RowBytes, RowBytes);
    }

    /// <summary>The <see cref="BlockSize"/> rows of block <paramref name="block"/>, contiguous, in slot order.</summary>
    public Span<byte> BlockRows(int block)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)block, (uint)NumBlocks, nameof(block));
        var chunk = block / _blocksPerChunk;
        return _chunks[chunk].AsSpan((block - (chunk * _blocksPerChunk)) * _blockBytes, _blockBytes);
    }

    /// <summary>Fills the block's rows with the unset sentinel.</summary>
    public void ResetBlock(int block) => BlockRows(block).Fill(UnsetByte);

    /// <summary>Copies every row of block <paramref name="source"/> over block <paramref name="destination"/>.</summary>
    public void CopyBlock(int source, int destination) => BlockRows(source).CopyTo(BlockRows(destination));

    /// <summary>Writes each of the step's tokens' rows to its slot: <c>Row(batch.SlotMapping[t])</c> for every t.</summary>
    public void CaptureStep(ForwardBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var slots = batch.SlotMapping;
        for (var t = 0; t < batch.TokenCount; t++)
        {
            WriteStepRow(batch, t, Row(slots[t]));
        }
    }

    /// <summary>
    /// Copies the rows of positions <c>[startPosition, startPosition + count)</c> of the sequence with
    /// <paramref name="blockTable"/> into <paramref name="destination"/>, one run of contiguous rows per block.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is shorter than <c>count * RowBytes</c>.</exception>
    public void Gather(ReadOnlySpan<int> blockTable, int startPosition, int count, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(startPosition);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (destination.Length < (long)count * RowBytes)
        {
            throw new ArgumentException($"{count} rows of {RowBytes} bytes do not fit {destination.Length} bytes", nameof(destination));
        }
        var position = startPosition;
        var end = startPosition + count;
        while (position < end)
        {
            var offset = position % BlockSize;
            var rows = Math.Min(BlockSize - offset, end - position);
            BlockRows(blockTable[position / BlockSize]).Slice(offset * RowBytes, rows * RowBytes).CopyTo(destination);
            destination = destination[(rows * RowBytes)..];
            position += rows;
        }
    }

    /// <summary>
    /// True when <paramref name="rows"/> hold any unset element. The default treats any <see cref="UnsetByte"/> as
    /// unset, which suits channels whose valid rows never contain that byte; channels with wider elements override it.
    /// </summary>
    public virtual bool ContainsUnset(ReadOnlySpan<byte> rows) => rows.Contains(UnsetByte);

    /// <summary>
    /// True when some whole row of <paramref name="rows"/> is <see cref="UnsetByte"/>: the test for channels whose valid
    /// rows may contain that byte (a multi-byte integer, say) but are never all of it.
    /// </summary>
    protected bool ContainsWholeUnsetRow(ReadOnlySpan<byte> rows)
    {
        for (var offset = 0; offset < rows.Length; offset += RowBytes)
        {
            if (!rows.Slice(offset, RowBytes).ContainsAnyExcept(UnsetByte))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Writes what this channel stores for token <paramref name="token"/> of the step into its slot's row.</summary>
    /// <param name="batch">The step, after its forward pass.</param>
    /// <param name="token">The token's index within the step.</param>
    /// <param name="destination">The row of the token's slot, <see cref="RowBytes"/> long.</param>
    protected abstract void WriteStepRow(ForwardBatch batch, int token, Span<byte> destination);
}
