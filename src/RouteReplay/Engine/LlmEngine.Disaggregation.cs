using RouteReplay.Cache;
using RouteReplay.Storage;

namespace RouteReplay.Engine;

/// <summary>
/// The engine's side of a prefill/decode split. Decode: a request with a <see cref="RemotePrefill"/> is imported (see
/// <see cref="BlockImport"/>); between steps, what arrived is copied into its blocks, and a complete import runs on
/// with its first token. Prefill: a request with a <see cref="BlockExport"/> hands its payloads out as its steps
/// compute them and holds them until <see cref="ReleaseExport"/>. The step thread only copies payloads in and out;
/// all I/O runs elsewhere.
/// </summary>
public sealed partial class LlmEngine
{
    private readonly HashSet<BlockExport> _exports = [];
    private readonly List<BlockImport> _importsToProcess = [];
    private readonly SemaphoreSlim _arrivals = new(0);

    /// <summary>The weights identity the fingerprint covers (a hash of the weight files or the user's version).</summary>
    public string WeightsIdentity { get; private set; }

    /// <summary>
    /// Called on any thread whenever blocks arrive off the step thread (a store lookup completed, a prefill source sent
    /// something), so an idle step loop can wake up.
    /// </summary>
    public Action? BlocksArrived { get; set; }

    /// <summary>
    /// Where the engine reports what it decided about a remote prefill that failed (retried, computed here, failed), and
    /// when a block store node goes down or comes back.
    /// </summary>
    public Action<string> Log { get; set; } = message => Console.Error.WriteLine($"routereplay: {message}");

    /// <summary>Requests whose prompt blocks are being imported from a prefill source.</summary>
    public int ImportingRequests => _scheduler.Imports.Count;

    /// <summary>Exports still holding blocks for their peers.</summary>
    public int HoldingExports => _exports.Count;

    /// <summary>Device blocks exports hold for their peers.</summary>
    public int ExportHeldBlocks => _exports.Sum(e => e.HeldBlockCount);

    /// <summary>
    /// Gives back every block <paramref name="export"/> holds (its peer acknowledged them, failed, or is gone); hashed
    /// blocks stay in the prefix cache. Idempotent; a request still computing for the export is aborted first.
    /// </summary>
    public void ReleaseExport(BlockExport export)
    {
        ArgumentNullException.ThrowIfNull(export);
        if (export.Released)
        {
            return;
        }
        if (!export.Ended && export.Owner is { } owner && _requests.TryGetValue(owner.Request.RequestId, out var entry) && ReferenceEquals(entry.State, owner))
        {
            Abort(owner);
            return;
        }
        if (!export.Ended)
        {
            export.Post(new ExportFailed(new OperationCanceledException("the export was released before the request had computed its blocks")));
        }
        export.Released = true;
        var held = export.Held;
        for (var i = held.Count - 1; i >= 0; i--)
        {
            _pool.Release(held[i]);
        }
        held.Clear();
        _exports.Remove(export);
    }

    private IEnumerable<int> ExportHolds() => _exports.SelectMany(e => e.Held);

    private void OnBlocksArrived()
    {
        _arrivals.Release();
        BlocksArrived?.Invoke();
    }

    private BlockImport CreateImport(RequestState state, int heldBlocks, UInt128[] heldRowDigests) =>
        new(state, state.PrefillAttempt, _codec, _rootKey, Fingerprint, _backend.Config.VocabSize, heldBlocks, heldRowDigests, OnBlocksArrived);

    /// <summary>On <see cref="AddRequest"/>: binds an export to the prompt, or leaves a request too wide to import (in choices or blocks) to be computed here.</summary>
    private void AttachDisaggregation(RequestState state)
    {
        var request = state.Request;
        if (request.PrefillExport is { } export)
        {
            export.Attach(request.PromptTokenIds, _rootKey, Options.BlockSize);
            export.Owner = state;
            _exports.Add(export);
        }
        if (request.RemotePrefill is null)
        {
            return;
        }
        var blocks = ((request.PromptTokenIds.Count - 1) / Options.BlockSize) + request.N;
        var reason = request.N > Options.MaxNumSeqs ? $"n = {request.N} choices exceed --max-num-seqs {Options.MaxNumSeqs}"
            : blocks > _pool.NumBlocks ? $"its prompt's shared blocks and one last block per choice ({blocks}) exceed the pool's {_pool.NumBlocks}"
            : null;
        if (reason is not null)
        {
            state.PrefillSettled = true;
            Stats.PrefillFallbacksLocal++;
            request.RemotePrefill.Report.ComputedLocally(reason);
            Log($"request '{request.RequestId}': {reason}, which an import needs at once; its prompt is computed here");
        }
    }

    /// <summary>From <see cref="Complete"/>: an import still in flight is abandoned; an export the request did not finish is failed and released.</summary>
    private void EndDisaggregation(RequestState state)
    {
        if (state.Import is { } import)
        {
            _scheduler.AbandonImport(import);
        }
        if (state.Request.PrefillExport is { } export && !export.Ended)
        {
            export.Post(new ExportFailed(state.Error ?? new OperationCanceledException("the request was aborted before its blocks were exported")));
            ReleaseExport(export);
        }
    }

    /// <summary>Between steps: copies what arrived for every import into its device blocks, and ends the imports that completed or failed.</summary>
    private void ProcessImports()
    {
        if (_scheduler.Imports.Count == 0)
        {
            return;
        }
        _importsToProcess.Clear();
        _importsToProcess.AddRange(_scheduler.Imports);
        foreach (var import in _importsToProcess)
        {
            try
            {
                while (import.Arrivals.TryDequeue(out var arrival) && Apply(import, arrival))
                {
                }
            }
            catch (Exception e)
            {
                FailImport(import, e);
            }
        }
    }

    /// <summary>Applies one arrival; false when the import has ended.</summary>
    private bool Apply(BlockImport import, ImportArrival arrival)
    {
        switch (arrival.Kind)
        {
            case ImportArrivalKind.Agreed:
                if (!_scheduler.KeepAgreedBlocks(import, arrival.Index))
                {
                    FailImport(import, new InvalidOperationException($"no free KV block to replace the {import.HeldBlocks - arrival.Index} cached prompt blocks whose rows differ from the prefill source's"));
                    return false;
                }
                Stats.ImportKeptBlocks += arrival.Index;
                return true;
            case ImportArrivalKind.Block:
                CopyIn(arrival, import.Blocks[arrival.Index]);
                return true;
            case ImportArrivalKind.Choice:
                CopyIn(arrival, import.LastBlocks[arrival.Index]);
                import.FirstTokens[arrival.Index] = arrival.Token;
                import.FirstLogprobs[arrival.Index] = arrival.Logprob;
                import.RandomStates[arrival.Index] = arrival.RandomState;
                return true;
            case ImportArrivalKind.Completed:
                import.SourceCachedTokens = arrival.Index;
                RunImported(import);
                return false;
            default:
                FailImport(import, arrival.Error!);
                return false;
        }
    }

    private void CopyIn(ImportArrival arrival, int block)
    {
        using var value = arrival.Value!;
        _copier.HostToDevice(value.Memory.Span.Slice(arrival.PayloadStart, _copier.PayloadBytes), block);
        Stats.ImportedBlocks++;
    }

    /// <summary>A complete import's choices run: the blocks committed as computed, each choice's first token accepted with its sampler state.</summary>
    private void RunImported(BlockImport import)
    {
        var state = import.Request;
        _scheduler.CompleteImport(import);
        state.PrefillSettled = true;
        Stats.RemotePrefills++;
        state.Request.RemotePrefill!.Report.Transferred(import.Source.Name);
        for (var c = 0; c < state.Choices.Length; c++)
        {
            var sequence = state.Choices[c];
            CommitFullBlocks(sequence);
            sequence.Random = new SeededRandom(import.RandomStates[c]);
            AcceptToken(sequence, import.FirstTokens[c], import.FirstLogprobs[c]);
        }
    }

    /// <summary>
    /// An import failed: its blocks are freed, then the request tries its next source, or computes its prompt here
    /// (<see cref="PrefillFallback.Local"/>), or fails with the source's error (<see cref="PrefillFallback.Error"/>).
    /// </summary>
    private void FailImport(BlockImport import, Exception error)
    {
        var state = import.Request;
        _scheduler.AbandonImport(import);
        Stats.RemotePrefillFailures++;
        var remote = state.Request.RemotePrefill!;
        var id = state.Request.RequestId;
        remote.Report.SourceFailed(import.Source.Name);
        if (state.PrefillAttempt + 1 < remote.Sources.Count)
        {
            state.PrefillAttempt++;
            Stats.PrefillRetries++;
            Log($"request '{id}': prefill on {import.Source.Name} failed ({error.Message}); retrying on {remote.Sources[state.PrefillAttempt].Name}");
            _scheduler.Requeue(state);
        }
        else if (remote.Fallback == PrefillFallback.Local)
        {
            state.PrefillSettled = true;
            Stats.PrefillFallbacksLocal++;
            remote.Report.ComputedLocally($"every prefill server failed, the last {import.Source.Name}: {error.Message}");
            Log($"request '{id}': prefill on {import.Source.Name} failed ({error.Message}); computing its prompt here");
            _scheduler.Requeue(state);
        }
        else
        {
            Stats.PrefillFallbacksError++;
            Log($"request '{id}': prefill on {import.Source.Name} failed ({error.Message}); failing it (prefill fallback: error)");
            Fail(state, new RemotePrefillException($"the prompt could not be prefilled remotely ({remote.Sources.Count} prefill source(s) tried, the last {import.Source.Name}): {error.Message}", error));
        }
    }

    /// <summary>
    /// Prefill side, after each step of the first choice: once its blocks cover the decode engine's held blocks, posts
    /// how many of them hold the same rows as its own (leading ones; the rest are sent), then every shared prompt block
    /// computed since, copied out of its device block.
    /// </summary>
    private void ExportComputedBlocks(Sequence sequence, BlockExport export)
    {
        var blockSize = Options.BlockSize;
        if (export.Agreed < 0)
        {
            if (sequence.ComputedTokens < export.HeldBlocks * blockSize)
            {
                return;
            }
            var kept = 0;
            while (kept < export.HeldBlocks && _copier.RowsDigest(sequence.BlockTable[kept]) == export.HeldRowDigests[kept])
            {
                kept++;
            }
            export.Agreed = kept;
            export.NextBlock = kept;
            export.Post(new ExportAgreed(kept));
            Stats.ExportKeptBlocks += kept;
        }
        var computed = Math.Min(sequence.ComputedTokens / blockSize, export.SharedBlocks);
        for (; export.NextBlock < computed; export.NextBlock++)
        {
            var b = export.NextBlock;
            var header = new PayloadHeader(Fingerprint, export.Keys[b], export.KeyBefore(b));
            export.Post(new ExportBlock(b, CopyOut(sequence.BlockTable[b], header, PromptTokens(sequence, b))));
            Stats.ExportedBlocks++;
        }
    }

    /// <summary>
    /// Prefill side, when a choice has sampled its first token: the export takes holds on the shared prompt blocks (the
    /// first choice; later choices share them) and on the choice's last prompt block, and posts that block with the
    /// token, its logprob and the sampler's state; after the last choice, the end.
    /// </summary>
    private void ExportFirstToken(Sequence sequence, BlockExport export, int token, TokenLogprob? logprob)
    {
        var shared = export.SharedBlocks;
        if (sequence.Choice == 0)
        {
            var prompt = new int[shared];
            for (var b = 0; b < shared; b++)
            {
                prompt[b] = Hold(export, sequence.BlockTable[b]);
            }
            export.PromptBlocks = prompt;
        }
        var last = Hold(export, sequence.BlockTable[shared]);
        var tokens = PromptTokens(sequence, shared);
        var header = new PayloadHeader(Fingerprint, tokens.Length == Options.BlockSize ? export.Keys[shared] : null, export.KeyBefore(shared));
        export.Post(new ExportChoice(sequence.Choice, CopyOut(last, header, tokens), token, logprob, sequence.Random.State));
        Stats.ExportedBlocks++;
        if (++export.ChoicesPosted == sequence.Request.Choices.Length)
        {
            export.Post(new ExportCompleted(sequence.Request.Choices[0].CachedTokens));
        }
    }

    private int Hold(BlockExport export, int block)
    {
        _pool.Share(block);
        export.Held.Add(block);
        return block;
    }

    private static int[] PromptTokens(Sequence sequence, int block)
    {
        var blockSize = sequence.Request.Request.PrefillExport!.BlockSize;
        var start = block * blockSize;
        var count = Math.Min(blockSize, sequence.PromptLength - start);
        var tokens = new int[count];
        for (var i = 0; i < count; i++)
        {
            tokens[i] = sequence.Tokens[start + i];
        }
        return tokens;
    }

    /// <summary>Copies a device block's payload into place in a new value of <paramref name="tokens"/>' length, to be sealed by the sender.</summary>
    private OutgoingBlock CopyOut(int block, PayloadHeader header, int[] tokens)
    {
        var value = new PooledValue(_codec.EncodedLength(tokens.Length));
        try
        {
            _copier.DeviceToHost(block, value.Memory.Span[_codec.PayloadRange(tokens.Length)]);
            return new OutgoingBlock(header, tokens, value);
        }
        catch
        {
            value.Dispose();
            throw;
        }
    }
}

/// <summary>A request's prompt could not be computed by any of its prefill sources and its fallback is to fail.</summary>
public sealed class RemotePrefillException(string message, Exception inner) : Exception(message, inner);
