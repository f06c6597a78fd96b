namespace RouteReplay.Server.Router;

/// <summary>
/// Watches a relayed server-sent-event stream, chunk by chunk as it comes, for an error event
/// (<c>data: {"error": ...}</c> at the start of a line), which the servers send when a stream fails after it started.
/// </summary>
internal sealed class SseErrorDetector
{
    private static readonly byte[] Pattern = "\ndata: {\"error\""u8.ToArray();

    private readonly byte[] _tail = new byte[Pattern.Length - 1];
    private int _tailLength = 1;

    public SseErrorDetector() => _tail[0] = (byte)'\n';

    public bool Seen { get; private set; }

    public void Feed(ReadOnlySpan<byte> chunk)
    {
        if (Seen || chunk.IsEmpty)
        {
            return;
        }
        Span<byte> seam = stackalloc byte[(Pattern.Length - 1) * 2];
        _tail.AsSpan(0, _tailLength).CopyTo(seam);
        var head = chunk[..Math.Min(chunk.Length, Pattern.Length - 1)];
        head.CopyTo(seam[_tailLength..]);
        if (seam[..(_tailLength + head.Length)].IndexOf(Pattern) >= 0 || chunk.IndexOf(Pattern) >= 0)
        {
            Seen = true;
            return;
        }
        if (chunk.Length >= _tail.Length)
        {
            chunk[^_tail.Length..].CopyTo(_tail);
            _tailLength = _tail.Length;
            return;
        }
        var kept = seam[..(_tailLength + chunk.Length)];
        _tailLength = Math.Min(_tail.Length, kept.Length);
        kept[^_tailLength..].CopyTo(_tail);
    }
}
