using RouteReplay.Routing;

namespace RouteReplay.Backends;

/// <summary>
/// One step's input and output buffers, sized once for the engine's limits and refilled every step so the step loop
/// allocates nothing. Token <c>t</c> belongs to sequence <c>TokenSequence[t]</c>, sits at <c>Positions[t]</c> and
/// writes its KV and routing to <c>SlotMapping[t]</c>; a sequence's block table lists its blocks in position order,
/// so position <c>p</c> lives in slot <c>BlockTable[p / B] * B + p % B</c>. The outputs (routing rows and logits)
/// live in host buffers the backend allocates (<see cref="IModelBackend.AllocateHostBuffer"/>), so a GPU backend
/// copies them back in one transfer each, without staging.
/// </summary>
public sealed class ForwardBatch : IDisposable
{
    private readonly HostBuffer _routing;
    private readonly HostBuffer _logits;
    private readonly HostBuffer _tokenStatus;
    private readonly HostBuffer _argMax;

    /// <param name="maxLogitRows">How many tokens of one step may ask for logits; defaults to one per sequence.</param>
    /// <param name="allocateHostBuffer">Allocates the output buffers; plain native memory by default.</param>
    public ForwardBatch(int maxTokens, int maxSequences, int maxBlocksPerSequence, RoutingFormat routing, int vocabSize, int maxLogitRows = 0, Func<long, HostBuffer>? allocateHostBuffer = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxTokens);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxSequences);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBlocksPerSequence);
        MaxTokens = maxTokens;
        MaxSequences = maxSequences;
        MaxBlocksPerSequence = maxBlocksPerSequence;
        RoutingFormat = routing;
        VocabSize = vocabSize;
        TokenIds = new int[maxTokens];
        Positions = new int[maxTokens];
        SlotMapping = new int[maxTokens];
        TokenSequence = new int[maxTokens];
        BlockTables = new int[maxSequences * maxBlocksPerSequence];
        MaxLogitRows = maxLogitRows > 0 ? maxLogitRows : maxSequences;
        LogitTokens = new int[MaxLogitRows];
        ForcedRouting = new byte[maxTokens * routing.RowBytes];
        allocateHostBuffer ??= NativeHostBuffer.Allocate;
        _routing = allocateHostBuffer((long)maxTokens * routing.RowBytes);
        _logits = allocateHostBuffer((long)MaxLogitRows * vocabSize * sizeof(float));
        _tokenStatus = allocateHostBuffer(maxTokens);
        _argMax = allocateHostBuffer((long)MaxLogitRows * sizeof(int));
        TokenStatus.Clear();
    }

    public int MaxTokens { get; }

    public int MaxSequences { get; }

    public int MaxBlocksPerSequence { get; }

    public int MaxLogitRows { get; }

    public RoutingFormat RoutingFormat { get; }

    public int VocabSize { get; }

    public int TokenCount { get; private set; }

    public int SequenceCount { get; private set; }

    public int LogitRowCount { get; private set; }

    /// <summary>True when at least one token of this step carries a forced routing row.</summary>
    public bool HasForcedRouting { get; private set; }

    public int[] TokenIds { get; }

    public int[] Positions { get; }

    public int[] SlotMapping { get; }

    public int[] TokenSequence { get; }

    /// <summary><c>[MaxSequences, MaxBlocksPerSequence]</c>.</summary>
    public int[] BlockTables { get; }

    /// <summary>Indices of the tokens whose logits are computed, one <see cref="LogitRow"/> each, in order.</summary>
    public int[] LogitTokens { get; }

    /// <summary><c>[MaxTokens, L_moe, K]</c>; a row starting with the sentinel means "route normally".</summary>
    public byte[] ForcedRouting { get; }

    /// <summary>
    /// Whether the forward must return the step's routing rows (default true). Off only in benchmarks that measure
    /// what capture costs: the rows are then neither copied back nor valid.
    /// </summary>
    public bool CaptureRouting { get; set; } = true;

    /// <summary>The step's routing buffer <c>[MaxTokens, L_moe, K]</c>, filled by the forward.</summary>
    public Span<byte> Routing => _routing.AsSpan<byte>(0, checked((int)_routing.Length));

    internal HostBuffer RoutingBuffer => _routing;

    /// <summary><c>[MaxLogitRows, VocabSize]</c> fp32: row <c>i</c> holds the logits of token <c>LogitTokens[i]</c>.</summary>
    internal HostBuffer LogitsBuffer => _logits;

    /// <summary>
    /// Whether the step's caller reads <see cref="LogitRow"/> (default true). When false, a backend that computes each
    /// row's argmax on its device may leave the logit rows unwritten and set <see cref="HasArgMax"/> instead (a GPU
    /// then copies back one id per row rather than a vocabulary of floats).
    /// </summary>
    public bool LogitsWanted { get; set; } = true;

    /// <summary>Ids at or past this are never an argmax (the tokenizer's token count); 0: every id.</summary>
    public int ArgMaxLimit { get; set; }

    /// <summary>Set by the forward when <see cref="ArgMax"/> holds every logit row's argmax for this step.</summary>
    public bool HasArgMax { get; set; }

    /// <summary>
    /// The id of row <paramref name="row"/>'s largest logit below <see cref="ArgMaxLimit"/>, as
    /// <c>TensorPrimitives.IndexOfMax</c> picks it (the first on ties); valid when <see cref="HasArgMax"/>.
    /// </summary>
    public int ArgMax(int row)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)row, (uint)LogitRowCount, nameof(row));
        return _argMax.AsSpan<int>((long)row * sizeof(int), 1)[0];
    }

    /// <summary>Records row <paramref name="row"/>'s argmax, for a backend that computes it on the host.</summary>
    public void SetArgMax(int row, int id)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)row, (uint)LogitRowCount, nameof(row));
        _argMax.AsSpan<int>((long)row * sizeof(int), 1)[0] = id;
    }

    internal HostBuffer ArgMaxBuffer => _argMax;

    /// <summary>
    /// One <see cref="TokenFault"/> value per token: none when the token is added, flags set by the forward. A token
    /// with a fault has meaningless outputs and its request must fail; the step's other tokens are unaffected.
    /// </summary>
    public Span<byte> TokenStatus => _tokenStatus.AsSpan<byte>(0, MaxTokens);

    internal HostBuffer TokenStatusBuffer => _tokenStatus;

    /// <summary>True when a token of the current step has a fault in <see cref="TokenStatus"/>.</summary>
    public bool HasTokenFaults => TokenStatus[..TokenCount].IndexOfAnyExcept((byte)TokenFault.None) >= 0;

    public void Clear()
    {
        TokenStatus[..TokenCount].Clear();
        TokenCount = 0;
        SequenceCount = 0;
        LogitRowCount = 0;
        HasForcedRouting = false;
        HasArgMax = false;
    }

    /// <summary>Adds a sequence with its block table and returns its index within the batch.</summary>
    public int AddSequence(ReadOnlySpan<int> blockTable)
    {
        if (SequenceCount == MaxSequences)
        {
            throw new InvalidOperationException($"the batch already holds {MaxSequences} sequences");
        }
        if (blockTable.Length > MaxBlocksPerSequence)
        {
            throw new ArgumentException($"a block table of {blockTable.Length} blocks exceeds {MaxBlocksPerSequence}", nameof(blockTable));
        }
        blockTable.CopyTo(BlockTables.AsSpan(SequenceCount * MaxBlocksPerSequence));
        return SequenceCount++;
    }

    /// <summary>Adds one token; <paramref name="forcedRow"/> is empty for normal routing or one full routing row.</summary>
    public void AddToken(int sequence, int tokenId, int position, int slot, bool needsLogits, ReadOnlySpan<byte> forcedRow = default)
    {
        if (TokenCount == MaxTokens)
        {
            throw new InvalidOperationException($"the batch already holds {MaxTokens} tokens");
        }
        var t = TokenCount++;
        TokenIds[t] = tokenId;
        Positions[t] = position;
        SlotMapping[t] = slot;
        TokenSequence[t] = sequence;
        var forced = ForcedRouting.AsSpan(t * RoutingFormat.RowBytes, RoutingFormat.RowBytes);
        if (forcedRow.IsEmpty)
        {
            RoutingFormat.Reset(forced);
        }
        else
        {
            forcedRow.CopyTo(forced);
            HasForcedRouting = true;
        }
        if (needsLogits)
        {
            if (LogitRowCount == MaxLogitRows)
            {
                throw new InvalidOperationException($"the batch already computes logits for {MaxLogitRows} tokens");
            }
            LogitTokens[LogitRowCount++] = t;
        }
    }

    public ReadOnlySpan<int> BlockTable(int sequence) => BlockTables.AsSpan(sequence * MaxBlocksPerSequence, MaxBlocksPerSequence);

    public Span<byte> RoutingRow(int token)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)token, (uint)MaxTokens, nameof(token));
        return _routing.AsSpan<byte>((long)token * RoutingFormat.RowBytes, RoutingFormat.RowBytes);
    }

    public Span<float> LogitRow(int row)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)row, (uint)MaxLogitRows, nameof(row));
        return _logits.AsSpan<float>((long)row * VocabSize * sizeof(float), VocabSize);
    }

    public void Dispose()
    {
        _routing.Dispose();
        _logits.Dispose();
        _tokenStatus.Dispose();
        _argMax.Dispose();
    }
}

/// <summary>Flags a forward sets for one token in <see cref="ForwardBatch.TokenStatus"/>.</summary>
[Flags]
public enum TokenFault : byte
{
    None = 0,

    /// <summary>A router saw a logit that is not finite (NaN or infinite) for the token: its routing is meaningless.</summary>
    NonFiniteRouterLogits = 1,
}
