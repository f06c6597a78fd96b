using Microsoft.Extensions.Logging;
using RouteReplay.Disaggregation;

namespace RouteReplay.Server.Router;

/// <summary>
/// One server behind the router: a prefill or decode server of a prefill/decode fleet, or a worker (a plain
/// <c>serve</c>, role both) of a data-parallel one; its address, transfer address (prefill), weights version, load and
/// health. Every change of health is logged.
/// </summary>
internal sealed class Upstream(ServerRole role, Uri baseUri, int number, ILogger logger)
{
    private int _outstanding;
    private long _failures;
    private int _up = 1;
    private int _downs;
    private TransferEndpoint? _transfer;
    private string? _weightVersion;

    public ServerRole Role { get; } = role;

    public Uri BaseUri { get; } = baseUri;

    public string Name { get; } = baseUri.ToString().TrimEnd('/');

    /// <summary>The role the server must announce in <c>/get_model_info</c>'s <c>disaggregation_role</c>.</summary>
    public string RoleName => Role.ToString().ToLowerInvariant();

    /// <summary>The router's flag that names such a server: <c>prefill</c>, <c>decode</c> or <c>worker</c>.</summary>
    public string Flag => Role == ServerRole.Both ? "worker" : RoleName;

    /// <summary>What logs and answers call such a server: <c>decode server</c>, or <c>worker</c>.</summary>
    public string Kind => Role == ServerRole.Both ? "worker" : $"{RoleName} server";

    /// <summary>How answers to clients name the server, without its address: <c>decode server 2</c> (the second <c>--decode</c>).</summary>
    public string Label => $"{Kind} {number}";

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

    /// <summary>How many times the server went down (it may have restarted since, with an empty cache).</summary>
    public int Downs => Volatile.Read(ref _downs);

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
            logger.LogInformation("{Kind} {Server} is back up", Kind, Name);
        }
    }

    public void MarkDown(string reason)
    {
        if (Interlocked.Exchange(ref _up, 0) == 1)
        {
            Interlocked.Increment(ref _downs);
            logger.LogWarning("{Kind} {Server} is down: {Reason}", Kind, Name, reason);
        }
    }

    public Uri Url(string pathAndQuery) => new(BaseUri, pathAndQuery);

    /// <summary>
    /// The servers ordered for one request: up before down, then least outstanding requests; ties rotate with
    /// <paramref name="turn"/>, so equal servers share the load.
    /// </summary>
    public static Upstream[] ByLoad(IReadOnlyList<Upstream> servers, int turn) => ByLoad(servers, s => s, turn);

    /// <summary>As <see cref="ByLoad(IReadOnlyList{Upstream}, int)"/>, for items that each stand for a server.</summary>
    public static T[] ByLoad<T>(IReadOnlyList<T> items, Func<T, Upstream> server, int turn) =>
        [.. items.Select((item, i) => (item, i)).OrderBy(s => server(s.item).IsUp ? 0 : 1).ThenBy(s => server(s.item).Outstanding)
            .ThenBy(s => ((s.i - turn) % items.Count + items.Count) % items.Count).Select(s => s.item)];

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
