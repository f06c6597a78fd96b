using Microsoft.Extensions.Logging;
using RouteReplay.Disaggregation;

namespace RouteReplay.Server.Router;

/// <summary>
/// One server behind the router: its role, address, transfer address (prefill), weights version, load and health.
/// Every change of health is logged.
/// </summary>
internal sealed class Upstream(ServerRole role, Uri baseUri, int number, ILogger logger)
{
    private int _outstanding;
    private long _failures;
    private int _up = 1;
    private TransferEndpoint? _transfer;
    private string? _weightVersion;

    public ServerRole Role { get; } = role;

    public Uri BaseUri { get; } = baseUri;

    public string Name { get; } = baseUri.ToString().TrimEnd('/');

    public string RoleName => Role.ToString().ToLowerInvariant();

    /// <summary>How answers to clients name the server, without its address: <c>decode server 2</c> (the second <c>--decode</c>).</summary>
    public string Label => $"{RoleName} server {number}";

    /// <summary>A prefill server's transfer address (its URL's host and the port it announced last).</summary>
    public TransferEndpoint? Transfer
    {
        get => Volatile.Read(ref _transfer);
        set => Volatile.Write(ref _transfer, value);
    }

    /// <summary>The weights version the server announced last.</summary>
    public string? WeightVersion
    {
        get => Volatile.Read(ref _weightVersion);
        set => Volatile.Write(ref _weightVersion, value);
    }

    /// <summary>Requests routed to this server and not finished.</summary>
    public int Outstanding => Volatile.Read(ref _outstanding);

    /// <summary>Requests that could not reach the server, and (prefill) transfers from it that failed.</summary>
    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>False after a failed health probe or connection, until one succeeds.</summary>
    public bool IsUp => Volatile.Read(ref _up) != 0;

    /// <summary>Counts a request in flight; dispose to end it.</summary>
    public Load Enter()
    {
        Interlocked.Increment(ref _outstanding);
        return new Load(this);
    }

    /// <summary>A request that could not reach the server: counted, and the server is down until it answers again.</summary>
    public void CountFailure(string reason)
    {
        Interlocked.Increment(ref _failures);
        MarkDown(reason);
    }

    /// <summary>A transfer from this prefill server that failed (its health is for the probes to say).</summary>
    public void CountTransferFailure() => Interlocked.Increment(ref _failures);

    public void MarkUp()
    {
        if (Interlocked.Exchange(ref _up, 1) == 0)
        {
            logger.LogInformation("{Role} server {Server} is back up", RoleName, Name);
        }
    }

    public void MarkDown(string reason)
    {
        if (Interlocked.Exchange(ref _up, 0) == 1)
        {
            logger.LogWarning("{Role} server {Server} is down: {Reason}", RoleName, Name, reason);
        }
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
