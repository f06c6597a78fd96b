using System.Runtime.InteropServices;
using RouteReplay.Backends;
using RouteReplay.Cache;
using RouteReplay.Model.Tokenization;
using RouteReplay.Routing;
using RouteReplay.Storage;

namespace RouteReplay.Engine;

/// <summary>
/// The synchronous engine: <see cref="AddRequest"/>, <see cref="Abort(RequestHandle)"/> and <see cref="Step"/>, all
/// called from one thread. A step schedules, runs the forward, captures every channel's rows at the step's slots, then
/// samples, commits newly full blocks to the prefix index and finishes requests, assembling their routing from the
/// block table.
/// </summary>
public sealed partial class LlmEngine : IDisposable
{
    private readonly IModelBackend _backend;
    private readonly TextTokenizer _tokenizer;
    private readonly IReadOnlySet<int> _eosTokenIds;
    private readonly BlockPool _pool;
    private readonly RoutingChannel _routing;
    private readonly Scheduler _scheduler;
    private readonly HostTier? _host;
    private readonly BlockStoreTier? _store;
    private readonly PayloadCopier _copier;
    private readonly ForwardBatch _batch;
    private readonly StepSampler _sampler;
    private BlockKey _rootKey;
    private readonly Dictionary<string, (RequestState State, IRequestSink Sink)> _requests = [];
    private readonly RunningIds _ids = new();
    private readonly int[] _blockTokens;
    private readonly PayloadCodec _codec;

    /// <param name="weightsIdentity">
    /// Identifies the weights in the model fingerprint: <see cref="ModelFingerprint.HashWeights"/> of the checkpoint or
    /// a version string the user guarantees is unique.
    /// </param>
    /// <param name="auxiliaryChannels">Channels stored beside routing in every block (tests register one).</param>
    /// <remarks>
    /// The block pool has the backend's <see cref="IModelBackend.NumBlocks"/> blocks: the backend sizes its KV cache
    /// (from <see cref="EngineOptions.ResolvedNumBlocks"/> on the CPU, from free device memory on a GPU), and an
    /// explicit <see cref="EngineOptions.NumBlocks"/> must agree with it.
    /// </remarks>
    /// <param name="blockStore">A block store to use instead of opening <see cref="EngineOptions.KvStore"/>; the engine disposes it.</param>
    public LlmEngine(IModelBackend backend, TextTokenizer tokenizer, IEnumerable<int> eosTokenIds, EngineOptions options, string weightsIdentity, IEnumerable<BlockChannel>? auxiliaryChannels = null, IBlockStore? blockStore = null)
    {
        Options = options.Validate();
        if (backend.BlockSize != options.BlockSize || (options.NumBlocks > 0 && backend.NumBlocks != options.NumBlocks))
        {
            throw new ArgumentException($"the backend's KV cache ({backend.NumBlocks} blocks of {backend.BlockSize}) does not match the options ({options.NumBlocks} of {options.BlockSize})", nameof(backend));
        }
        _backend = backend;
        _tokenizer = tokenizer;
        _eosTokenIds = eosTokenIds.ToHashSet();
        _routing = new RoutingChannel(backend.RoutingFormat, backend.NumBlocks, backend.BlockSize);
        List<BlockChannel> channels = [_routing, .. auxiliaryChannels ?? []];
        _pool = new BlockPool(backend.NumBlocks, backend.BlockSize, options.EnablePrefixCaching, channels);
        _copier = new PayloadCopier(backend, _pool.Channels);
        PayloadLayout = PayloadLayout.Of(backend, _pool.Channels);
        Fingerprint = ModelFingerprint.Compute(backend.Config, weightsIdentity, PayloadLayout);
        _store = blockStore is not null || options.KvStore is not null ? OpenStore(blockStore, options, PayloadLayout, Fingerprint, message => Log(message)) : null;
        var hostBlocks = HostTier.BlocksFor(options.SwapSpaceGiB, _copier.PayloadBytes);
        _host = hostBlocks > 0 ? new HostTier(_pool, _copier, hostBlocks) { Lower = _store } : null;
        PoolSizes = PoolSizes.Of(_pool, PayloadLayout, hostBlocks);
        ILowerTier? lower = (ILowerTier?)_host ?? _store;
        if (lower is not null)
        {
            _pool.EvictionSink = new DeviceEvictionRelay(_copier, lower);
        }
        _scheduler = new Scheduler(options, _pool, _host, _store, _copier, _routing, Stats) { CreateImport = CreateImport };
        _codec = new PayloadCodec(PayloadLayout);
        WeightsIdentity = weightsIdentity;
        if (_store is not null)
        {
            _store.LoadCompleted = OnBlocksArrived;
        }
        var maxBlocksPerSequence = options.BlocksFor(options.MaxModelLen);
        _batch = new ForwardBatch(options.MaxNumBatchedTokens, options.MaxNumSeqs, maxBlocksPerSequence, backend.RoutingFormat, backend.Config.VocabSize, allocateHostBuffer: backend.AllocateHostBuffer);
        _sampler = new StepSampler(backend.Config.VocabSize, tokenizer.TokenCount);
        _rootKey = BlockKey.Root(Fingerprint);
        _blockTokens = new int[options.BlockSize];
    }

    public EngineOptions Options { get; }

    public EngineStats Stats { get; } = new();

    public RoutingFormat RoutingFormat => _backend.RoutingFormat;

    public TextTokenizer Tokenizer => _tokenizer;

    public BlockPool Pool => _pool;

    /// <summary>The host-memory tier, or null when <see cref="EngineOptions.SwapSpaceGiB"/> is 0.</summary>
    public HostTier? HostTier => _host;

    public PayloadCopier PayloadCopier => _copier;

    /// <summary>The backend the engine runs its forwards on.</summary>
    public IModelBackend Backend => _backend;
    /// <summary>The block store tier, or null without <see cref="EngineOptions.KvStore"/>.</summary>
    public BlockStoreTier? StoreTier => _store;

    /// <summary>What each tier of the KV pool holds (device KV, host channels, host tier), for the startup log.</summary>
    public PoolSizes PoolSizes { get; }

    /// <summary>The layout of every block payload this engine produces (KV dtype and size, channels).</summary>
    public PayloadLayout PayloadLayout { get; }

    /// <summary>The model fingerprint the block keys are rooted at; changes with the weights.</summary>
    public UInt128 Fingerprint { get; private set; }

    public int WaitingCount => _scheduler.WaitingCount;

    public int RunningCount => _scheduler.RunningCount;

    public bool HasUnfinishedRequests => _requests.Count > 0;

    /// <summary>Told about every step after its forward (tests record the rows each token was computed with).</summary>
    internal IStepObserver? StepObserver { get; set; }

    /// <summary>
    /// Whether steps capture routing rows (default true). A benchmark switch that measures what capture costs: while
    /// it is off, no request may ask for routing. Changing it drops the prefix cache, so blocks computed without rows
    /// are never reused by a request that returns them.
    /// </summary>
    public bool CaptureRouting
    {
        get => _batch.CaptureRouting;
        set
        {
            if (value != _batch.CaptureRouting)
            {
                FlushCache();
                _batch.CaptureRouting = value;
            }
        }
    }

    /// <summary>
    /// Queues a request and returns its handle. Throws an <see cref="ArgumentException"/> naming the field when it is
    /// invalid (an explicit <see cref="SamplingParams.MaxTokens"/> that does not fit the model length among others), when
    /// one of its ids is a live request's (see <see cref="RunningIds"/>), or when it could never fit the KV pool, instead
    /// of leaving it waiting forever. Without a max tokens, a choice may generate what the model length and the pool leave.
    /// </summary>
    public RequestHandle AddRequest(EngineRequest request, IRequestSink sink)
    {
        if (MemoryState.IsReleased)
        {
            throw new InvalidOperationException($"the engine's memory is released ({MemoryState.Released}); resume it before adding requests");
        }
        request.Validate(Options.MaxModelLen);
        if (request.ReturnRouting && !CaptureRouting)
        {
            throw new ArgumentException("routing was requested but this engine runs with routing capture off", "return_routed_experts");
        }
        if (_requests.ContainsKey(request.RequestId))
        {
            throw new ArgumentException($"a request with id '{request.RequestId}' is already running; ids must be unique among running requests", "request_id");
        }
        _ids.CheckFree(request);
        var prompt = request.PromptTokenIds;
        foreach (var token in prompt)
        {
            if ((uint)token >= (uint)_backend.Config.VocabSize)
            {
                throw new ArgumentException($"prompt token id {token} is outside the vocabulary of {_backend.Config.VocabSize}", "prompt");
            }
        }
        if (request.RoutingStart > prompt.Count)
        {
            throw new ArgumentException($"routed_experts_start {request.RoutingStart} is beyond the prompt's {prompt.Count} tokens", "routed_experts_start");
        }
        var poolTokens = _pool.NumBlocks * Options.BlockSize;
        var maxTokens = request.PrefillExport is not null ? 1 : request.Sampling.MaxTokens ?? Math.Max(1, Math.Min(Options.MaxModelLen, poolTokens) - prompt.Count);
        var needed = Options.BlocksFor(prompt.Count + maxTokens);
        if (needed > _pool.NumBlocks)
        {
            throw request.Sampling.MaxTokens is null
                ? new ArgumentException($"the prompt's {prompt.Count} tokens need {Options.BlocksFor(prompt.Count + 1)} KV blocks with the first generated token, but the pool has {_pool.NumBlocks}", "prompt")
                : new ArgumentException($"the request needs up to {needed} KV blocks ({prompt.Count} prompt tokens plus up to {maxTokens} generated) but the pool has {_pool.NumBlocks}", "max_tokens");
        }
        var state = new RequestState(request, sink);
        state.Choices = Enumerable.Range(0, request.N).Select(i => new Sequence(state, i, maxTokens, _tokenizer, _rootKey)).ToArray();
        AttachDisaggregation(state);
        _requests.Add(request.RequestId, (state, sink));
        _ids.Add(request);
        foreach (var sequence in state.Choices)
        {
            _scheduler.Enqueue(sequence);
        }
        return new RequestHandle(state);
    }

    /// <summary>Ends the running request with id <paramref name="requestId"/> now, as <see cref="Abort(RequestHandle)"/> does.</summary>
    public bool Abort(string requestId) => _requests.TryGetValue(requestId, out var entry) && Abort(entry.State);

    /// <summary>
    /// Ends the request of <paramref name="handle"/> now, if it is still running (a finished request's id may name a newer
    /// request, which is left alone). Its blocks are freed and its sink gets a result with finish reason abort; a choice
    /// that produced tokens keeps its text and, when routing was asked for, the rows of those tokens (see
    /// <see cref="AssembleRouting"/>); a choice aborted before its first token has no routing.
    /// </summary>
    public bool Abort(RequestHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        return _requests.TryGetValue(handle.RequestId, out var entry) && ReferenceEquals(entry.State, handle.State) && Abort(entry.State);
    }

    private bool Abort(RequestState state)
    {
        var sink = state.Sink;
        foreach (var sequence in state.Choices)
        {
            if (sequence.Status == SequenceStatus.Finished)
            {
                continue;
            }
            var routing = sequence.OutputCount > 0 ? TryAssembleRouting(sequence) : null;
            var rest = sequence.FlushText();
            if (rest.Length > 0)
            {
                sink.OnDelta(new StreamDelta(state.Request.RequestId, sequence.Choice, [], rest, null));
            }
            _scheduler.Remove(sequence);
            state.Results[sequence.Choice] = new ChoiceResult(sequence.Choice, sequence.OutputTokens(), sequence.Text, FinishReason.Abort, routing, sequence.Logprobs);
        }
        Stats.RequestsAborted++;
        Complete(state, sink);
        return true;
    }

    /// <summary>The live sequence of one choice, for tests that inspect or alter its state between steps.</summary>
    internal Sequence? FindSequence(string requestId, int choice) =>
        _requests.TryGetValue(requestId, out var entry) ? entry.State.Choices[choice] : null;

    /// <summary>Ends every request with <paramref name="error"/>, after a failure that leaves the engine unusable.</summary>
    public void FailAll(Exception error)
    {
        foreach (var (state, sink) in _requests.Values.ToArray())
        {
            state.Error ??= error;
            Complete(state, sink);
        }
    }

    /// <summary>Runs one step; returns false when there was nothing to run.</summary>
    /// <remarks>A step that throws after scheduling fails only its own requests (see <see cref="FailStep"/>).</remarks>
    public bool Step()
    {
        ProcessImports();
        var chunks = Schedule();
        if (chunks.Count == 0)
        {
            if (_scheduler.HasWork && _scheduler.LoadingCount == 0)
            {
                throw new InvalidOperationException("the scheduler has requests but scheduled nothing");
            }
            return false;
        }
        Stats.PrefixCacheHitTokens = _scheduler.PrefixHitTokens;
        try
        {
            PrepareBatch(chunks);
            _backend.Forward(_batch);
            foreach (var channel in _pool.Channels)
            {
                if (_batch.CaptureRouting || !ReferenceEquals(channel, _routing))
                {
                    channel.CaptureStep(_batch);
                }
            }
            StepObserver?.OnForward(chunks, _batch);
            Stats.Steps++;
            Stats.ComputedTokens += _batch.TokenCount;
            Stats.PeakBatchedTokens = Math.Max(Stats.PeakBatchedTokens, _batch.TokenCount);
            var faulty = _batch.HasTokenFaults ? FailFaultyTokens(chunks) : null;
            Postprocess(chunks, faulty);
        }
        catch (DeviceFaultException e)
        {
            throw Stop(e);
        }
        catch (Exception e)
        {
            FailStep(chunks, e);
        }
        return true;
    }

    /// <summary>Runs every queued request to completion, one step after another (waiting for arriving blocks when nothing else can run).</summary>
    public void RunToCompletion()
    {
        while (Step() || WaitForArrivals())
        {
        }
    }

    /// <summary>
    /// When requests wait only for blocks arriving off the step thread (store lookups, imports from a prefill source),
    /// blocks until something arrives and returns true; else returns false.
    /// </summary>
    public bool WaitForArrivals()
    {
        if (_scheduler.LoadingCount == 0)
        {
            return false;
        }
        if (_store is not null && _scheduler.ImportingSequences == 0)
        {
            while (!_store.WaitForCompletedLoad(TimeSpan.FromMilliseconds(100)))
            {
            }
            return true;
        }
        _arrivals.Wait();
        return true;
    }

    private static BlockStoreTier OpenStore(IBlockStore? given, EngineOptions options, PayloadLayout layout, UInt128 fingerprint, Action<string> log)
    {
        var store = given ?? BlockStores.Open(
            BlockStoreSpec.Parse(options.KvStore!),
            new BlockStoreOptions(
                (long)(options.KvStoreMaxGiB * (1L << 30)),
                options.KvStoreTtlSeconds > 0 ? TimeSpan.FromSeconds(options.KvStoreTtlSeconds) : null,
                TimeSpan.FromMilliseconds(options.KvStoreTimeoutMs)));
        var settings = new StoreTierSettings(options.KvStoreWrite == KvStoreWriteMode.Through, options.KvStoreQueueSize,
            TimeSpan.FromMilliseconds(options.KvStoreTimeoutMs), TimeSpan.FromMilliseconds(options.KvStoreRetryMaxMs));
        return new BlockStoreTier(store, layout, settings, log) { Fingerprint = fingerprint };
    }

    private void PrepareBatch(IReadOnlyList<ScheduledChunk> chunks)
    {
        _batch.Clear();
        _batch.ArgMaxLimit = _tokenizer.TokenCount;
        var logitsWanted = false;
        var blockSize = Options.BlockSize;
        foreach (var (sequence, tokens) in chunks)
        {
            if (sequence.ComputedTokens + tokens >= sequence.TokenCount)
            {
                logitsWanted |= !sequence.Request.Request.Sampling.IsGreedy || sequence.Logprobs is not null;
            }
            var table = CollectionsMarshal.AsSpan(sequence.BlockTable);
            var index = _batch.AddSequence(table);
            for (var i = 0; i < tokens; i++)
            {
                var position = sequence.ComputedTokens + i;
                var slot = (table[position / blockSize] * blockSize) + (position % blockSize);
                var forced = ReadOnlySpan<byte>.Empty;
                if (position < sequence.SavedRoutingRows)
                {
                    forced = sequence.SavedRouting.AsSpan(position * _routing.RowBytes, _routing.RowBytes);
                    Stats.RecomputedTokens++;
                }
                _batch.AddToken(index, sequence.Tokens[position], position, slot, needsLogits: position == sequence.TokenCount - 1, forced);
            }
        }
        _batch.LogitsWanted = logitsWanted;
    }

    /// <param name="failed">Requests failed after the forward; their chunks only keep the logit rows counted.</param>
    private void Postprocess(IReadOnlyList<ScheduledChunk> chunks, HashSet<RequestState>? failed)
    {
        _sampler.Clear();
        var logitRow = 0;
        foreach (var (sequence, tokens) in chunks)
        {
            if (failed is not null && failed.Contains(sequence.Request))
            {
                logitRow += sequence.ComputedTokens + tokens >= sequence.TokenCount ? 1 : 0;
                continue;
            }
            sequence.ComputedTokens += tokens;
            CommitFullBlocks(sequence);
            var export = sequence.Request.Request.PrefillExport;
            if (export is not null && sequence.Choice == 0)
            {
                ExportComputedBlocks(sequence, export);
            }
            if (sequence.ComputedTokens < sequence.TokenCount)
            {
                continue;
            }
            _sampler.Add(sequence, logitRow++);
        }
        _sampler.Draw(_batch);
        for (var i = 0; i < _sampler.Count; i++)
        {
            var sequence = _sampler.SequenceAt(i);
            var (token, logprob) = (_sampler.Token(i), _sampler.Logprob(i));
            if (sequence.Request.Request.PrefillExport is { } export)
            {
                ExportFirstToken(sequence, export, token, logprob);
            }
            AcceptToken(sequence, token, logprob);
        }
    }

    /// <summary>Appends a sampled token (and its logprob) to the choice, tells its sink, and finishes the choice when the token ends it.</summary>
    private void AcceptToken(Sequence sequence, int token, TokenLogprob? logprob)
    {
        var sampling = sequence.Request.Request.Sampling;
        if (logprob is not null)
        {
            sequence.Logprobs?.Add(logprob);
        }
        var text = sequence.Append(token, withText: sampling.IncludeStopTokenText || !IsStopToken(token, sampling, _eosTokenIds));
        Stats.GeneratedTokens++;
        var finish = FinishReasonAfter(sequence, token, _eosTokenIds);
        if (finish.HasValue)
        {
            text += sequence.FlushText();
        }
        var sink = sequence.Request.Sink;
        sink.OnDelta(new StreamDelta(sequence.Request.Request.RequestId, sequence.Choice, [token], text, logprob is null ? null : [logprob]));
        if (finish is { } done)
        {
            FinishSequence(sequence, done, sink);
        }
    }

    private static bool IsStopToken(int token, SamplingParams sampling, IReadOnlySet<int> eosTokenIds) =>
        (!sampling.IgnoreEos && eosTokenIds.Contains(token)) || sampling.StopTokenIds?.Contains(token) == true;

    private static FinishReason? FinishReasonAfter(Sequence sequence, int token, IReadOnlySet<int> eosTokenIds)
    {
        var sampling = sequence.Request.Request.Sampling;
        if (sequence.StoppedByString)
        {
            return FinishReason.Stop;
        }
        if (!sampling.IgnoreEos && eosTokenIds.Contains(token))
        {
            return FinishReason.Stop;
        }
        if (sampling.StopTokenIds is { } stops && stops.Contains(token))
        {
            return FinishReason.Stop;
        }
        return sequence.OutputCount >= sequence.MaxTokens ? FinishReason.Length : null;
    }

    /// <summary>Keys every block that is now full and computed into the prefix index (chained from the previous block).</summary>
    private void CommitFullBlocks(Sequence sequence)
    {
        var blockSize = Options.BlockSize;
        while ((sequence.CommittedBlocks + 1) * blockSize <= sequence.ComputedTokens)
        {
            var b = sequence.CommittedBlocks;
            for (var i = 0; i < blockSize; i++)
            {
                _blockTokens[i] = sequence.Tokens[(b * blockSize) + i];
            }
            var parent = sequence.LastCommittedKey;
            var key = BlockKey.Chain(parent, _blockTokens);
            var block = sequence.BlockTable[b];
            if (!_pool.IsCached(block))
            {
                _pool.Commit(block, key, parent, _blockTokens);
                if (_store is not null && _pool.IsCached(block))
                {
                    _store.OfferCommitted(key, parent, _blockTokens, EvictedPayload.OnDevice(_copier, block));
                }
            }
            sequence.LastCommittedKey = key;
            sequence.CommittedBlocks++;
        }
    }

    private void FinishSequence(Sequence sequence, FinishReason reason, IRequestSink sink)
    {
        var state = sequence.Request;
        var routing = TryAssembleRouting(sequence);
        _scheduler.Remove(sequence);
        state.Results[sequence.Choice] = new ChoiceResult(sequence.Choice, sequence.OutputTokens(), sequence.Text, reason, routing, sequence.Logprobs)
        {
            MatchedStop = sequence.MatchedStop,
        };
        if (--state.Unfinished == 0)
        {
            Stats.RequestsFinished++;
            Complete(state, sink);
        }
    }

    /// <summary>The choice's routing when its request asked for it; null, and the request failed, on an integrity failure.</summary>
    private RoutingRows? TryAssembleRouting(Sequence sequence)
    {
        var state = sequence.Request;
        if (!state.Request.ReturnRouting)
        {
            return null;
        }
        try
        {
            var routing = AssembleRouting(sequence);
            Stats.RoutingBytesReturned += routing.Data.Length;
            return routing;
        }
        catch (RoutingIntegrityException e)
        {
            Stats.RoutingIntegrityFailures++;
            state.Error ??= e;
            return null;
        }
    }

    /// <summary>
    /// Gathers rows <c>[start, T-1)</c> from the routing channel through the block table, like attention reads KV (for
    /// an aborted choice, from wherever its rows are: see <see cref="TryGatherRows"/>). Every channel's rows for those
    /// positions are checked: a row still holding the unset sentinel fails the request.
    /// </summary>
    private RoutingRows AssembleRouting(Sequence sequence)
    {
        var start = sequence.Request.Request.RoutingStart;
        var count = sequence.TokenCount - 1 - start;
        RoutingRows? routing = null;
        foreach (var channel in _pool.Channels)
        {
            var rows = new byte[count * channel.RowBytes];
            if (!TryGatherRows(sequence, channel, start, count, rows))
            {
                continue;
            }
            if (channel.ContainsUnset(rows))
            {
                throw new RoutingIntegrityException(
                    $"request '{sequence.Request.Request.RequestId}' choice {sequence.Choice}: a '{channel.Name}' row of positions {start}..{start + count - 1} was never written");
            }
            if (ReferenceEquals(channel, _routing))
            {
                routing = new RoutingRows(start, _routing.Format, rows);
            }
            else
            {
                (sequence.AuxiliaryRows ??= [])[channel.Name] = rows;
            }
        }
        return routing!;
    }

    private void Complete(RequestState state, IRequestSink sink)
    {
        EndDisaggregation(state);
        _requests.Remove(state.Request.RequestId);
        _ids.Remove(state.Request);
        var first = state.Choices[0];
        var usage = new Usage(first.PromptLength, state.Choices.Sum(c => c.OutputCount), first.CachedTokens);
        Stats.PromptTokens += usage.PromptTokens;
        Stats.CachedPromptTokens += usage.CachedPromptTokens;
        var choices = state.Results.Select((r, i) => r ?? new ChoiceResult(i, [], "", FinishReason.Abort, null, null)).ToArray();
        sink.OnFinished(new RequestResult(state.Request.RequestId, state.Request.PromptTokenIds, choices, usage, state.Error)
        {
            AuxiliaryRows = state.Choices.Select(c => c.AuxiliaryRows).ToArray(),
        });
    }

    public void Dispose()
    {
        _store?.Dispose();
        _host?.Dispose();
        _batch.Dispose();
        _backend.Dispose();
    }
}
