namespace RouteReplay.Engine;

/// <summary>What a decode engine does with a request whose remote prefill failed on every source.</summary>
public enum PrefillFallback
{
    /// <summary>Compute the prompt locally, as if the request had come without a remote prefill.</summary>
    Local,

    /// <summary>Fail the request with the last source's error.</summary>
    Error,
}

/// <summary>
/// Something that computes a request's prompt elsewhere and sends its blocks: one prefill server. It fills a
/// <see cref="BlockImport"/> from its own thread; the step thread copies what arrived into device blocks between steps.
/// </summary>
public interface IPrefillSource
{
    /// <summary>The source as errors and logs name it (for a prefill server, its transfer address).</summary>
    string Name { get; }

    /// <summary>
    /// Starts computing and sending the import's blocks. Called on the step thread: it must return at once and do
    /// its work elsewhere, reporting to <paramref name="import"/> (every payload verified there) until it completes or fails.
    /// </summary>
    void Start(BlockImport import);
}

/// <summary>
/// A request's remote prefill: the sources to try in order (the first, then the others when one fails) and what to do
/// when all of them have failed. A decode engine takes its own prefix hits first and asks a source only for the rest.
/// </summary>
public sealed record RemotePrefill(IReadOnlyList<IPrefillSource> Sources, PrefillFallback Fallback)
{
    public IReadOnlyList<IPrefillSource> Sources { get; } = Sources.Count > 0 ? Sources : throw new ArgumentException("a remote prefill needs at least one source", nameof(Sources));

    /// <summary>What the engine made of it: transferred from which source, or computed here and why.</summary>
    public PrefillReport Report { get; } = new();
}
