using RouteReplay.Backends;

namespace RouteReplay.Engine;

/// <summary>
/// The step's failure boundary. Scheduling mutates the block accounting (allocation, prefix hits, promotions, swaps);
/// everything after it (the forward, capturing channel rows, sampling, delivering deltas, and any I/O added there)
/// writes only the slots of blocks the step's own sequences hold alone, indexes blocks they fully computed and frees
/// the requests that finished. So a throw after scheduling fails the requests of that step and nothing else: their
/// blocks are freed in both tiers, their sinks get a <see cref="StepFailedException"/>, and every other request keeps
/// running untouched. Blocks they had fully computed and captured (committed before the throw) stay cached.
/// </summary>
/// <remarks>
/// When the engine's own state may be corrupt the engine stops instead: every request fails and <see cref="Step"/>
/// throws from then on. That is the case when scheduling throws (an allocation or tier move was cut short), when
/// freeing the failed requests throws, or when the block accounting no longer adds up afterwards (a ref count that
/// differs from the references live sequences hold). Serving on with such a pool could hand one block to two requests
/// and return another request's KV or rows, which is worse than going down loudly; a server reports the stop on
/// <c>/health</c>.
/// </remarks>
public sealed partial class LlmEngine
{
    private Exception? _stopped;

    private IReadOnlyList<ScheduledChunk> Schedule()
    {
        if (_stopped is not null)
        {
            throw new InvalidOperationException($"the engine has stopped after a failure that may have corrupted its block accounting: {_stopped.Message}", _stopped);
        }
        try
        {
            return _scheduler.Schedule();
        }
        catch (Exception e)
        {
            throw Stop(new InvalidOperationException($"scheduling a step failed, so the block accounting can no longer be trusted: {e.Message}", e));
        }
    }

    private void FailStep(IReadOnlyList<ScheduledChunk> chunks, Exception cause)
    {
        Stats.StepFailures++;
        var error = new StepFailedException($"the engine step running this request failed: {cause.Message}", cause);
        try
        {
            foreach (var (sequence, _) in chunks)
            {
                var state = sequence.Request;
                if (_requests.TryGetValue(state.Request.RequestId, out var entry) && ReferenceEquals(entry.State, state))
                {
                    Fail(state, error);
                }
            }
            if (_scheduler.FindAccountingError(ExportHolds()) is { } mismatch)
            {
                throw new InvalidOperationException(mismatch);
            }
        }
        catch (Exception e)
        {
            throw Stop(new InvalidOperationException($"a step failed ({cause.Message}) and the engine's state could not be restored: {e.Message}", new AggregateException(cause, e)));
        }
    }

    /// <summary>
    /// Fails the requests of the step's tokens that the forward flagged (<see cref="ForwardBatch.TokenStatus"/>), before
    /// anything of theirs is sampled or committed to the prefix index; the step's other requests go on.
    /// </summary>
    /// <returns>The failed requests.</returns>
    private HashSet<RequestState> FailFaultyTokens(IReadOnlyList<ScheduledChunk> chunks)
    {
        var failed = new HashSet<RequestState>();
        var status = _batch.TokenStatus;
        for (var t = 0; t < _batch.TokenCount; t++)
        {
            if (status[t] == (byte)TokenFault.None)
            {
                continue;
            }
            var state = chunks[_batch.TokenSequence[t]].Sequence.Request;
            if (failed.Add(state))
            {
                Stats.NonFiniteRouterLogitFailures++;
                Fail(state, new NonFiniteRouterLogitsException(
                    $"the router's logits for the token at position {_batch.Positions[t]} are not finite (NaN or infinite), so its routing would be meaningless; the model's weights or activations overflow on this input"));
            }
        }
        return failed;
    }

    /// <summary>Ends every unfinished choice of the request with <paramref name="error"/>, freeing its blocks in both tiers.</summary>
    private void Fail(RequestState state, Exception error)
    {
        foreach (var sequence in state.Choices)
        {
            if (sequence.Status != SequenceStatus.Finished)
            {
                _scheduler.Remove(sequence);
                state.Results[sequence.Choice] = new ChoiceResult(sequence.Choice, sequence.OutputTokens(), sequence.Text, FinishReason.Abort, null, sequence.Logprobs);
            }
        }
        state.Error ??= error;
        Stats.RequestsFailed++;
        try
        {
            Complete(state, state.Sink);
        }
        catch (Exception)
        {
            // The request is already removed and its blocks freed; a sink that cannot take its result is its own loss.
        }
    }

    private Exception Stop(Exception error)
    {
        _stopped = error;
        foreach (var (state, sink) in _requests.Values.ToArray())
        {
            state.Error ??= error;
            try
            {
                Complete(state, sink);
            }
            catch (Exception)
            {
                // As in Fail: the others must still be told.
            }
        }
        return error;
    }
}
