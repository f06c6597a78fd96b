using System.Collections.Concurrent;

namespace RouteReplay.Server.Router;

/// <summary>The generation requests the router is relaying, by relay id, with the decode server each went to.</summary>
internal sealed class RelayRegistry
{
    private readonly ConcurrentDictionary<string, Upstream> _relays = new(StringComparer.Ordinal);

    /// <summary>A new relay id, unique among the router's requests.</summary>
    public static string NewId() => "relay-" + Guid.NewGuid().ToString("N");

    /// <summary>Records the relay until the result is disposed.</summary>
    public IDisposable Enter(string relayId, Upstream decode)
    {
        _relays[relayId] = decode;
        return new Exit(_relays, relayId);
    }

    public KeyValuePair<string, Upstream>[] Snapshot() => [.. _relays];

    public bool Contains(string relayId) => _relays.ContainsKey(relayId);

    private sealed class Exit(ConcurrentDictionary<string, Upstream> relays, string relayId) : IDisposable
    {
        public void Dispose() => relays.TryRemove(relayId, out _);
    }
}
