using Microsoft.Extensions.Logging;
using RouteReplay.Disaggregation;

namespace RouteReplay.Server.Router;

/// <summary>
/// The workers of a data-parallel fleet, which may change while the router runs (<c>/add_worker</c>,
/// <c>/remove_worker</c>): readers take a snapshot, which never changes; a removed worker's requests in flight finish
/// on it. Each worker is numbered in the order it joined (<c>worker 3</c>), numbers never reused.
/// </summary>
internal sealed class WorkerPool(RouterOptions options, ILogger logger)
{
    private readonly Lock _lock = new();
    private Worker[] _workers = [];
    private int _numbered;

    /// <summary>The model every worker serves (learned from the first).</summary>
    public string? Model { get; set; }

    public Worker[] Snapshot => Volatile.Read(ref _workers);

    public Upstream[] Servers => [.. Snapshot.Select(w => w.Server)];

    /// <summary>A worker for <paramref name="url"/>, not yet in the pool.</summary>
    public Upstream NewServer(Uri url) => new(ServerRole.Both, url, Interlocked.Increment(ref _numbered), logger);

    public Worker? Find(string name) => Snapshot.FirstOrDefault(w => w.Server.Name == name);

    /// <summary>Adds the worker; false when the pool has one of that address already.</summary>
    public bool TryAdd(Upstream server)
    {
        lock (_lock)
        {
            if (_workers.Any(w => w.Server.Name == server.Name))
            {
                return false;
            }
            Volatile.Write(ref _workers, [.. _workers, new Worker(server, options.MaxTreeSize)]);
            return true;
        }
    }

    /// <summary>Removes the worker of that address; null when there is none.</summary>
    public Worker? Remove(string name)
    {
        lock (_lock)
        {
            var removed = _workers.FirstOrDefault(w => w.Server.Name == name);
            if (removed is not null)
            {
                Volatile.Write(ref _workers, [.. _workers.Where(w => w != removed)]);
            }
            return removed;
        }
    }

    /// <summary>Forgets the prompts sent to the workers of these servers (their caches were flushed or their weights replaced).</summary>
    public void ForgetPrefixes(IEnumerable<Upstream> servers)
    {
        var cleared = servers.ToHashSet();
        foreach (var worker in Snapshot.Where(w => cleared.Contains(w.Server)))
        {
            worker.Prefixes.Clear();
        }
    }
}
