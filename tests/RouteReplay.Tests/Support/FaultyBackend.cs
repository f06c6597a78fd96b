using RouteReplay.Backends;

namespace RouteReplay.Tests.Support;

/// <summary>
/// Wraps a backend and throws once, in the first forward whose batch <paramref name="fault"/> picks, before the inner
/// forward runs or after it (KV and routing written, as a failing capture, storage write or transfer would leave them).
/// The exception is an <see cref="InvalidOperationException"/> unless <paramref name="error"/> makes another.
/// </summary>
public sealed class FaultyBackend(IModelBackend inner, Func<ForwardBatch, bool> fault, bool afterForward = false, Func<string, Exception>? error = null) : DelegatingBackend(inner)
{
    /// <summary>True once the fault has been thrown.</summary>
    public bool Fired { get; private set; }

    /// <summary>A fault that picks the first batch holding <paramref name="tokenId"/>.</summary>
    public static Func<ForwardBatch, bool> OnToken(int tokenId) => batch => batch.TokenIds.AsSpan(0, batch.TokenCount).Contains(tokenId);

    /// <summary>A fault that picks the <paramref name="forward"/>-th forward (from 1).</summary>
    public static Func<ForwardBatch, bool> OnForward(int forward)
    {
        var count = 0;
        return _ => ++count == forward;
    }

    public override void Forward(ForwardBatch batch)
    {
        var fire = !Fired && fault(batch);
        if (fire && !afterForward)
        {
            Fired = true;
            throw (error ?? (m => new InvalidOperationException(m)))("simulated fault in the forward");
        }
        Inner.Forward(batch);
        if (fire)
        {
            Fired = true;
            throw (error ?? (m => new InvalidOperationException(m)))("simulated fault after the forward");
        }
    }
}
