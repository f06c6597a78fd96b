using System.Diagnostics;
using Microsoft.Extensions.Logging;
using RouteReplay.Engine;
using RouteReplay.Server.Http;
using RouteReplay.Server.Metrics;

namespace RouteReplay.Server;

/// <summary>
/// The server's side of sharing the GPU with a trainer. A release or resume runs alone, like a weight update (through the
/// <see cref="WeightGate"/>: it waits for the requests in flight, or aborts them first), and the engine changes its
/// memory between steps. Requests that arrive while a release is under way or anything is released wait here for the
/// resume, at most <see cref="ServerOptions.SleepWaitTimeout"/>, then get 503 with <c>Retry-After</c>; a request is let
/// into the gate only while nothing is released, so no request ever reaches a released engine.
/// </summary>
public sealed class MemoryOccupation
{
    /// <summary>Seconds a request refused for a released engine is told to wait before it retries.</summary>
    public const int RetryAfterSeconds = 5;

    private readonly EngineHost _host;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private MemoryState _state = MemoryState.Awake;
    private int _releasing;
    private int _waiting;
    private long _releases;
    private long _resumes;
    private long _waitTimeouts;
    private TaskCompletionSource _awake = Completed();

    internal MemoryOccupation(EngineHost host, ILogger logger)
    {
        _host = host;
        _logger = logger;
    }

    /// <summary>What the engine has released, as of its last release, resume or weight update.</summary>
    public MemoryState State
    {
        get
        {
            lock (_lock)
            {
                return _state;
            }
        }
    }

    /// <summary>Requests waiting for a resume.</summary>
    public int Waiting => Volatile.Read(ref _waiting);

    /// <summary>Releases that changed what is released.</summary>
    public long Releases => Interlocked.Read(ref _releases);

    /// <summary>Resumes that changed what is released.</summary>
    public long Resumes => Interlocked.Read(ref _resumes);

    /// <summary>Requests answered 503 because no resume came within the wait timeout.</summary>
    public long WaitTimeouts => Interlocked.Read(ref _waitTimeouts);

    /// <summary>The engine's report after each change of its memory (on the step thread).</summary>
    internal void OnChanged(MemoryState state)
    {
        lock (_lock)
        {
            _state = state;
            UpdateAwake();
        }
    }

    /// <summary>
    /// Enters the weight gate as a request once nothing is released or being released; dispose the result to leave.
    /// </summary>
    /// <exception cref="ApiException">503 (code <c>memory_released</c>) when no resume came within the wait timeout.</exception>
    public async Task<WeightGate.Pass> EnterAsync(CancellationToken cancellationToken)
    {
        var timeout = _host.Options.SleepWaitTimeout;
        var started = Stopwatch.GetTimestamp();
        while (true)
        {
            Task awake;
            lock (_lock)
            {
                awake = _awake.Task;
            }
            if (!awake.IsCompleted)
            {
                await WaitAwakeAsync(awake, timeout - Stopwatch.GetElapsedTime(started), cancellationToken).ConfigureAwait(false);
            }
            var pass = await _host.Gate.EnterAsync(cancellationToken).ConfigureAwait(false);
            lock (_lock)
            {
                if (!IsClosed)
                {
                    return pass;
                }
            }
            pass.Dispose();
        }
    }

    /// <summary>
    /// Releases <paramref name="regions"/> once the requests in flight have finished (or were aborted, with
    /// <paramref name="abortAll"/>); requests arriving meanwhile wait for the resume. Returns how many were aborted.
    /// </summary>
    public async Task<int> ReleaseAsync(MemoryRegions regions, bool keepWeightsInHost, bool abortAll, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            _releasing++;
            UpdateAwake();
        }
        try
        {
            var aborted = 0;
            using (await _host.Gate.BeginUpdateAsync(
                abortAll ? async () => aborted = await _host.Engine.InvokeAsync(e => e.AbortAll()).ConfigureAwait(false) : null,
                cancellationToken).ConfigureAwait(false))
            {
                var changed = await _host.Engine.InvokeAsync(e =>
                {
                    var before = e.MemoryState;
                    e.ReleaseMemory(regions, keepWeightsInHost);
                    return e.MemoryState != before;
                }).ConfigureAwait(false);
                if (changed)
                {
                    Interlocked.Increment(ref _releases);
                }
            }
            _logger.LogInformation(
                "GPU memory released ({Regions}; weights {Weights}), {Aborted} requests aborted; new requests wait up to {Seconds} s for a resume",
                regions, State.Weights, aborted, _host.Options.SleepWaitTimeout.TotalSeconds);
            return aborted;
        }
        finally
        {
            lock (_lock)
            {
                _releasing--;
                UpdateAwake();
            }
        }
    }

    /// <summary>Takes <paramref name="regions"/> back; the requests waiting run once nothing is released any more.</summary>
    /// <exception cref="WeightsDiscardedException">The weights were dropped and not replaced since; nothing changed.</exception>
    public async Task<MemoryState> ResumeAsync(MemoryRegions regions, CancellationToken cancellationToken)
    {
        using (await _host.Gate.BeginUpdateAsync(null, cancellationToken).ConfigureAwait(false))
        {
            var (before, state) = await _host.Engine.InvokeAsync(e =>
            {
                var before = e.MemoryState;
                e.ResumeMemory(regions);
                return (before, e.MemoryState);
            }).ConfigureAwait(false);
            if (state != before)
            {
                Interlocked.Increment(ref _resumes);
            }
            _logger.LogInformation("GPU memory resumed ({Regions}); still released: {Released}", regions, state.Released);
            return state;
        }
    }

    private bool IsClosed => _releasing > 0 || _state.IsReleased;

    private async Task WaitAwakeAsync(Task awake, TimeSpan remaining, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _waiting);
        try
        {
            if (remaining > TimeSpan.Zero)
            {
                await awake.WaitAsync(remaining, cancellationToken).ConfigureAwait(false);
                return;
            }
        }
        catch (TimeoutException)
        {
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }
        Interlocked.Increment(ref _waitTimeouts);
        _host.Metrics.Count(RequestOutcome.Rejected);
        throw new ApiException(
            503,
            $"the server has released its GPU memory for another process and was not resumed within --sleep-wait-timeout-seconds {_host.Options.SleepWaitTimeout.TotalSeconds:0.###}; retry later",
            null,
            "memory_released")
        {
            RetryAfterSeconds = RetryAfterSeconds,
        };
    }

    private void UpdateAwake()
    {
        if (!IsClosed)
        {
            _awake.TrySetResult();
        }
        else if (_awake.Task.IsCompleted)
        {
            _awake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    private static TaskCompletionSource Completed()
    {
        var source = new TaskCompletionSource();
        source.SetResult();
        return source;
    }
}
