using System.Collections.Concurrent;

namespace RouteReplay.Storage;

/// <summary>
/// Which nodes of a block store are reachable. A fault on a node (an operation that failed or timed out) marks that
/// node down: operations on its keys are skipped (misses, unwritten blocks) without being sent, while the other nodes
/// go on serving. A background prober asks the down node (<see cref="IBlockStore.ProbeAsync"/>) after a backoff that
/// doubles from 1 s (or <c>longestBackoff</c> when shorter) up to <c>longestBackoff</c>; its first success brings the
/// node back. No request ever waits for a probe, and each node's change of state is logged once.
/// </summary>
internal sealed class StoreHealth : IDisposable
{
    private readonly IBlockStore _store;
    private readonly StoreStats _stats;
    private readonly Action<string> _log;
    private readonly TimeSpan _longestBackoff;
    private readonly TimeSpan _firstBackoff;
    private readonly TimeSpan _probeTimeout;
    private readonly ConcurrentDictionary<string, Task> _down = new();
    private readonly CancellationTokenSource _stopping = new();

    public StoreHealth(IBlockStore store, StoreStats stats, Action<string> log, TimeSpan longestBackoff, TimeSpan probeTimeout)
    {
        _store = store;
        _stats = stats;
        _log = log;
        _longestBackoff = longestBackoff;
        _firstBackoff = TimeSpan.FromTicks(Math.Min(TimeSpan.TicksPerSecond, longestBackoff.Ticks));
        _probeTimeout = probeTimeout;
    }

    /// <summary>True unless <paramref name="node"/> is down.</summary>
    public bool IsUp(string node) => !_down.ContainsKey(node);

    /// <summary>Marks <paramref name="node"/> down after <paramref name="error"/> (unless it already is) and starts probing it.</summary>
    public void ReportFailure(string node, Exception error)
    {
        if (_stopping.IsCancellationRequested || _down.ContainsKey(node))
        {
            return;
        }
        var probing = new TaskCompletionSource();
        if (!_down.TryAdd(node, probing.Task))
        {
            return;
        }
        _stats.Node(node).IsDown = true;
        _stats.CountOutage(node);
        _log($"kv store {Name(node)} failed ({Reason(node, error)}); treating it as down, its blocks are computed instead; probing it again in {_firstBackoff.TotalSeconds:0.###} s");
        _ = ProbeUntilUpAsync(node, probing);
    }

    private async Task ProbeUntilUpAsync(string node, TaskCompletionSource probing)
    {
        var wait = _firstBackoff;
        try
        {
            while (true)
            {
                await Task.Delay(wait, _stopping.Token).ConfigureAwait(false);
                if (await AnswersAsync(node).ConfigureAwait(false))
                {
                    _stats.Node(node).IsDown = false;
                    _down.TryRemove(node, out _);
                    _log($"kv store {Name(node)} is reachable again");
                    return;
                }
                wait = TimeSpan.FromTicks(Math.Min(wait.Ticks * 2, _longestBackoff.Ticks));
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        finally
        {
            probing.TrySetResult();
        }
    }

    private async Task<bool> AnswersAsync(string node)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        timeout.CancelAfter(_probeTimeout);
        try
        {
            await _store.ProbeAsync(node, timeout.Token).AsTask().WaitAsync(timeout.Token).ConfigureAwait(false);
            return true;
        }
        catch (Exception) when (!_stopping.IsCancellationRequested)
        {
            return false;
        }
    }

    private string Name(string node) =>
        node == _store.Description || _store.Description.EndsWith("://" + node, StringComparison.Ordinal) ? _store.Description : $"{_store.Description} node {node}";

    /// <summary>The error's message without the node's name in front (the log line names it already).</summary>
    private static string Reason(string node, Exception error) =>
        error.Message.StartsWith(node + ": ", StringComparison.Ordinal) ? error.Message[(node.Length + 2)..] : error.Message;

    /// <summary>Stops the probers and waits (briefly) for them to end.</summary>
    public void Dispose()
    {
        _stopping.Cancel();
        Task.WaitAll(_down.Values.ToArray(), TimeSpan.FromSeconds(5));
        _stopping.Dispose();
    }
}
