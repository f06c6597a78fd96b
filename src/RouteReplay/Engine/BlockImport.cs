using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using RouteReplay.Cache;

namespace RouteReplay.Engine;

/// <summary>
/// One request's prompt blocks arriving on a decode engine from an <see cref="IPrefillSource"/>. The engine creates it
/// when it admits the request: it has taken its own prefix hits for the first <see cref="HeldBlocks"/> full blocks and
/// allocated device blocks for the rest of the prompt: <see cref="SharedBlocks"/> full blocks that every choice shares,
/// and per choice the block of the last prompt token (partial or full), which each choice computes itself, as in one
/// engine. The source reports from its own thread, in this order: <see cref="Agree"/> (how many of the held blocks its
/// own blocks agree with, row for row), every shared block from that count on (<see cref="AddBlock"/>), each choice's
/// last block with its first token, logprob and sampler state (<see cref="AddChoice"/>), then <see cref="Complete"/>.
/// </summary>
/// <remarks>
/// Every payload is verified here, on the source's thread, against the identity the block must have: the model
/// fingerprint, its key and parent key (a partial last block carries no key) and its token ids; the step thread then
/// only copies verified payloads into their device blocks through the <see cref="PayloadCopier"/>. Anything out of
/// order or failing verification throws <see cref="InvalidDataException"/>; the source then calls <see cref="Fail"/>.
/// </remarks>
public sealed class BlockImport
{
    private readonly PayloadCodec _codec;
    private readonly int[] _prompt;
    private readonly int _vocabSize;
    private readonly Action _arrived;
    private readonly CancellationTokenSource _cancel = new();
    private readonly Lock _lock = new();
    private readonly bool[] _choiceArrived;
    private int _agreed = -1;
    private int _nextBlock;
    private int _choices;
    private int _state;

    internal BlockImport(RequestState request, int attempt, PayloadCodec codec, BlockKey root, UInt128 fingerprint, int vocabSize, int heldBlocks, UInt128[] heldRowDigests, Action arrived)
    {
        var engineRequest = request.Request;
        Request = request;
        Attempt = attempt;
        Source = engineRequest.RemotePrefill!.Sources[attempt];
        _codec = codec;
        _prompt = [.. engineRequest.PromptTokenIds];
        _vocabSize = vocabSize;
        _arrived = arrived;
        BlockSize = codec.Layout.BlockSize;
        Fingerprint = fingerprint;
        SharedBlocks = (_prompt.Length - 1) / BlockSize;
        HeldBlocks = heldBlocks;
        HeldRowDigests = heldRowDigests;
        Root = root;
        Keys = new BlockKey[SharedBlocks + 1];
        var parent = root;
        for (var b = 0; b < SharedBlocks; b++)
        {
            parent = Keys[b] = BlockKey.Chain(parent, BlockTokens(b));
        }
        if (LastBlockTokens == BlockSize)
        {
            Keys[SharedBlocks] = BlockKey.Chain(parent, BlockTokens(SharedBlocks));
        }
        _choiceArrived = new bool[engineRequest.N];
        Blocks = new int[SharedBlocks];
        LastBlocks = new int[engineRequest.N];
        FirstTokens = new int[engineRequest.N];
        FirstLogprobs = new TokenLogprob?[engineRequest.N];
        RandomStates = new ulong[engineRequest.N];
        StartedAt = Stopwatch.GetTimestamp();
    }

    /// <summary>The decode engine's id of the request (the source names its own request after it).</summary>
    public string RequestId => Request.Request.RequestId;

    public IReadOnlyList<int> PromptTokenIds => _prompt;

    /// <summary>The request's sampling: the source samples each choice's first token with it (choice i with seed + i).</summary>
    public SamplingParams Sampling => Request.Request.Sampling;

    public int N => Request.Request.N;

    /// <summary>Null: no logprobs; else the first token's logprob with that many alternatives.</summary>
    public int? Logprobs => Request.Request.Logprobs;

    public int BlockSize { get; }

    /// <summary>The fingerprint every payload must carry: the decode engine's model.</summary>
    public UInt128 Fingerprint { get; }

    /// <summary>Full blocks before the last prompt token's block: computed once, shared by every choice.</summary>
    public int SharedBlocks { get; }

    /// <summary>Tokens in each choice's last prompt block: 1 to <see cref="BlockSize"/>.</summary>
    public int LastBlockTokens => _prompt.Length - (SharedBlocks * BlockSize);

    /// <summary>Leading shared blocks the decode engine already holds (its own prefix hits), not asked for unless they disagree.</summary>
    public int HeldBlocks { get; }

    /// <summary>Per held block, <see cref="PayloadCopier.RowsDigest"/> of its rows: the source sends a held block anyway when its own rows differ.</summary>
    public IReadOnlyList<UInt128> HeldRowDigests { get; }

    /// <summary>Which of the request's sources this is (0 first; retries count up).</summary>
    public int Attempt { get; }

    public IPrefillSource Source { get; }

    /// <summary>Cancelled when the decode engine no longer wants the blocks (the request was aborted or failed): stop and let go.</summary>
    public CancellationToken Cancellation => _cancel.Token;

    /// <summary>True once <see cref="Complete"/> or <see cref="Fail"/> was accepted.</summary>
    public bool IsFinished => Volatile.Read(ref _state) != 0;

    internal RequestState Request { get; }

    internal BlockKey Root { get; }

    /// <summary>Chain keys of the shared blocks, then of the last block when it is full.</summary>
    internal BlockKey[] Keys { get; }

    /// <summary>Device blocks of the shared prompt blocks: prefix hits first, then blocks allocated for the source's payloads.</summary>
    internal int[] Blocks { get; }

    /// <summary>Per choice, the device block its last prompt block's payload goes to.</summary>
    internal int[] LastBlocks { get; }

    internal int[] FirstTokens { get; }

    internal TokenLogprob?[] FirstLogprobs { get; }

    internal ulong[] RandomStates { get; }

    /// <summary>Held blocks the step thread has kept (the agreed count), once the agreement arrived.</summary>
    internal int KeptBlocks { get; set; } = -1;

    /// <summary>Prompt tokens the source served from its own prefix cache, reported at the end.</summary>
    internal int SourceCachedTokens { get; set; }

    internal long StartedAt { get; }

    internal ConcurrentQueue<ImportArrival> Arrivals { get; } = new();

    public ReadOnlySpan<int> BlockTokens(int block) =>
        _prompt.AsSpan(block * BlockSize, block < SharedBlocks ? BlockSize : LastBlockTokens);

    /// <summary>The chain key of block <paramref name="block"/>'s parent: the root for the first block.</summary>
    internal BlockKey KeyBefore(int block) => block == 0 ? Root : Keys[block - 1];

    /// <summary>The source's own blocks agree with the first <paramref name="blocks"/> held blocks; it sends every shared block after them.</summary>
    public void Agree(int blocks)
    {
        lock (_lock)
        {
            EnsureRunning();
            if (_agreed >= 0)
            {
                throw Protocol("the agreement on held blocks arrived twice");
            }
            if (blocks < 0 || blocks > HeldBlocks)
            {
                throw Protocol($"the source agreed on {blocks} held blocks, but the decode engine holds {HeldBlocks}");
            }
            _agreed = blocks;
            _nextBlock = blocks;
            Enqueue(new ImportArrival(ImportArrivalKind.Agreed, blocks));
        }
    }

    /// <summary>Shared block <paramref name="block"/>'s encoded value (the import owns it from here, also when it throws).</summary>
    /// <exception cref="InvalidDataException">Out of order, or the value is not that block.</exception>
    public void AddBlock(int block, IMemoryOwner<byte> value)
    {
        ArgumentNullException.ThrowIfNull(value);
        try
        {
            lock (_lock)
            {
                EnsureRunning();
                if (_agreed < 0)
                {
                    throw Protocol($"block {block} arrived before the agreement on held blocks");
                }
                if (block != _nextBlock || block >= SharedBlocks)
                {
                    throw Protocol($"block {block} arrived where block {_nextBlock} of {SharedBlocks} shared blocks was expected");
                }
                Check(_codec.Verify(value.Memory.Span, Fingerprint, Keys[block], KeyBefore(block), BlockTokens(block), out _), $"block {block}");
                _nextBlock++;
                Enqueue(new ImportArrival(ImportArrivalKind.Block, block, value, _codec.PayloadRange(BlockSize).Start.Value));
            }
        }
        catch
        {
            value.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Choice <paramref name="choice"/>'s last prompt block (<paramref name="value"/>, owned by the import from here),
    /// the first token sampled from it, that token's logprob when the request asked for logprobs, and the sampler's
    /// state after sampling it (<see cref="SeededRandom.State"/>), so sampling continues exactly.
    /// </summary>
    /// <exception cref="InvalidDataException">Out of order, a bad token or logprob, or the value is not that block.</exception>
    public void AddChoice(int choice, IMemoryOwner<byte> value, int token, TokenLogprob? logprob, ulong randomState)
    {
        ArgumentNullException.ThrowIfNull(value);
        try
        {
            lock (_lock)
            {
                EnsureRunning();
                if (_agreed < 0 || _nextBlock != SharedBlocks)
                {
                    throw Protocol($"choice {choice} arrived before the {SharedBlocks} shared blocks");
                }
                if ((uint)choice >= (uint)N || _choiceArrived[choice])
                {
                    throw Protocol($"choice {choice} arrived {((uint)choice >= (uint)N ? $"but the request has {N}" : "twice")}");
                }
                if ((uint)token >= (uint)_vocabSize)
                {
                    throw Protocol($"choice {choice}'s first token {token} is outside the vocabulary of {_vocabSize}");
                }
                if (Logprobs.HasValue != logprob is not null || (logprob is not null && (logprob.TokenId != token || logprob.TopAlternatives.Count > Logprobs)))
                {
                    throw Protocol($"choice {choice}'s logprob does not match the request (logprobs {Logprobs?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "off"})");
                }
                var parent = KeyBefore(SharedBlocks);
                var status = LastBlockTokens == BlockSize
                    ? _codec.Verify(value.Memory.Span, Fingerprint, Keys[SharedBlocks], parent, BlockTokens(SharedBlocks), out _)
                    : _codec.VerifyPartial(value.Memory.Span, Fingerprint, parent, BlockTokens(SharedBlocks), out _);
                Check(status, $"choice {choice}'s last prompt block");
                _choiceArrived[choice] = true;
                _choices++;
                Enqueue(new ImportArrival(ImportArrivalKind.Choice, choice, value, _codec.PayloadRange(LastBlockTokens).Start.Value, token, logprob, randomState));
            }
        }
        catch
        {
            value.Dispose();
            throw;
        }
    }

    /// <summary>Everything has arrived; <paramref name="cachedTokens"/> prompt tokens came from the source's own prefix cache.</summary>
    /// <exception cref="InvalidDataException">Some choice has not arrived.</exception>
    public void Complete(int cachedTokens)
    {
        lock (_lock)
        {
            EnsureRunning();
            if (_choices != N)
            {
                throw Protocol($"the source ended after {_choices} of {N} choices");
            }
            _state = 1;
            Enqueue(new ImportArrival(ImportArrivalKind.Completed, Math.Clamp(cachedTokens, 0, _prompt.Length)));
        }
    }

    /// <summary>The source could not deliver; the engine retries another source, computes locally or fails the request. False when already finished.</summary>
    public bool Fail(Exception error)
    {
        ArgumentNullException.ThrowIfNull(error);
        lock (_lock)
        {
            if (_state != 0)
            {
                return false;
            }
            _state = 2;
            Enqueue(new ImportArrival(ImportArrivalKind.Failed, 0, Error: error));
            return true;
        }
    }

    /// <summary>Step thread: the engine no longer wants the blocks; the source is told through <see cref="Cancellation"/>.</summary>
    internal void Cancel()
    {
        lock (_lock)
        {
            _state = _state == 0 ? 2 : _state;
        }
        _cancel.Cancel();
        while (Arrivals.TryDequeue(out var arrival))
        {
            arrival.Value?.Dispose();
        }
    }

    private void Enqueue(ImportArrival arrival)
    {
        Arrivals.Enqueue(arrival);
        _arrived();
    }

    private void EnsureRunning()
    {
        if (_state != 0)
        {
            throw Protocol(_cancel.IsCancellationRequested ? "the decode engine no longer wants this request's blocks" : "the import has already ended");
        }
    }

    private static void Check(PayloadCodecStatus status, string what)
    {
        if (status != PayloadCodecStatus.Ok)
        {
            throw Protocol($"{what} failed verification: {status}");
        }
    }

    private static InvalidDataException Protocol(string message) => new(message);
}

internal enum ImportArrivalKind
{
    Agreed,
    Block,
    Choice,
    Completed,
    Failed,
}

/// <summary>
/// Something an import received, for the step thread: the agreement (<see cref="Index"/> = kept blocks), a shared block
/// or a choice's last block (<see cref="Value"/>, its payload at <see cref="PayloadStart"/>), the end
/// (<see cref="Index"/> = the source's cached tokens) or a failure.
/// </summary>
internal sealed record ImportArrival(
    ImportArrivalKind Kind,
    int Index,
    IMemoryOwner<byte>? Value = null,
    int PayloadStart = 0,
    int Token = 0,
    TokenLogprob? Logprob = null,
    ulong RandomState = 0,
    Exception? Error = null);
