using RouteReplay.Backends;

namespace RouteReplay.Engine;

/// <summary>Sees every step after its forward pass and channel capture, before sampling (tests record rows with it).</summary>
internal interface IStepObserver
{
    /// <param name="chunks">The step's sequences and token counts; each <see cref="Sequence.ComputedTokens"/> is not advanced yet.</param>
    /// <param name="batch">The step's forward inputs and outputs, tokens in chunk order.</param>
    void OnForward(IReadOnlyList<ScheduledChunk> chunks, ForwardBatch batch);
}
