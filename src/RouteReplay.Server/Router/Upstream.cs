using RouteReplay.Disaggregation;

namespace RouteReplay.Server.Router;

/// <summary>One server behind the router: its role, address, transfer address (prefill), load and health.</summary>
internal sealed class Upstream(ServerRole role, Uri baseUri)
{
    private int _outstanding;
    private long _failures;
    private int _up = 1;

    public ServerRole Role { get; } = role;

    public Uri BaseUri { get; } = baseUri;

    public string Name { get; } = baseUri.ToString().TrimEnd('/');

    public string RoleName => Role.ToString().ToLowerInvariant();

    /// <summary>A prefill server's transfer address (its URL's host and the port it announced).</summary>
    public TransferEndpoint? Transfer { get; set; }

    /// <summary>Requests routed to this server and not finished.</summary>
    public int Outstanding => Volatile.Read(ref _outstanding);

    /// <summary>Requests that could not reach the server.</summary>
    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>False after a failed health probe or connection, until one succeeds.</summary>
    public bool IsUp
    {
        get => Volatile.Read(ref _up) != 0;
        set => Volatile.Write(ref _up, value ? 1 : 0);
    }

    /// <summary>Counts a request in flight; dispose to end it.</summary>
    public Load Enter()
    {
        Interlocked.Increment(ref _outstanding);
        return new Load(this);
    }

    public void CountFailure()
    {
        Interlocked.Increment(ref _failures);
        IsUp = false;
    }

    public Uri Url(string pathAndQuery) => new(BaseUri, pathAndQuery);

    /// <summary>
    /// The servers ordered for one request: up before down, then least outstanding requests; ties rotate with
    /// <paramref name="turn"/>, so equal servers share the load.
    /// </summary>
    public static Upstream[] ByLoad(IReadOnlyList<Upstream> servers, int turn) =>
        [.. servers.Select((server, i) => (server, i)).OrderBy(s => s.server.IsUp ? 0 : 1).ThenBy(s => s.server.Outstanding)
            .ThenBy(s => ((s.i - turn) % servers.Count + servers.Count) % servers.Count).Select(s => s.server)];

    public sealed class Load(Upstream server) : IDisposable
    {
        private int _ended;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _ended, 1) == 0)
            {
                Interlocked.Decrement(ref server._outstanding);
            }
        }
    }
}
