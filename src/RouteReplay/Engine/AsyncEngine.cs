using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace RouteReplay.Engine;

/// <summary>An event of one request's stream: a delta, then exactly one <see cref="RequestFinished"/>.</summary>
public abstract record RequestEvent;

public sealed record RequestDelta(StreamDelta Delta) : RequestEvent;

public sealed record RequestFinished(RequestResult Result) : RequestEvent;

/// <summary>
/// Runs an <see cref="LlmEngine"/>'s step loop on its own thread. Callers on any thread add requests and read each
/// request's events as an async stream; cancelling the reader aborts the request and frees its blocks.
/// </summary>
public sealed class AsyncEngine : IAsyncDisposable
{
    private readonly LlmEngine _engine;
    private readonly ConcurrentQueue<Action> _commands = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _loop;
    private readonly Lock _submitLock = new();
    private readonly TaskCompletionSource<Exception> _failed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Exception? _fault;
    private bool _closed;

    public AsyncEngine(LlmEngine engine)
    {
        _engine = engine;
        engine.BlocksArrived = WakeForArrivals;
        _loop = new Thread(RunLoop) { IsBackground = true, Name = "routereplay-step-loop" };
        _loop.Start();
    }

    public LlmEngine Engine => _engine;

    /// <summary>Durations of the steps that ran a forward.</summary>
    public StepTimeHistogram StepTimes { get; } = new();

    /// <summary>The exception that stopped the step loop, or null while it runs.</summary>
    public Exception? Fault => Volatile.Read(ref _fault);

    /// <summary>Completes with the exception that stopped the step loop (after every request was failed); never when it stops normally.</summary>
    public Task<Exception> Failed => _failed.Task;

    /// <summary>Queues <paramref name="request"/> and streams its events. Invalid requests throw before anything is queued.</summary>
    public async IAsyncEnumerable<RequestEvent> Generate(EngineRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var stream = await StartAsync(request).ConfigureAwait(false);
        await foreach (var item in stream.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            yield return item;
        }
    }

    /// <summary>
    /// Queues <paramref name="request"/> and returns once the engine has accepted it; throws the engine's
    /// <see cref="ArgumentException"/> when it is invalid. Disposing the stream before it finished aborts the request.
    /// </summary>
    public async Task<RequestStream> StartAsync(EngineRequest request)
    {
        var channel = Channel.CreateUnbounded<RequestEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var added = new TaskCompletionSource<RequestHandle>(TaskCreationOptions.RunContinuationsAsynchronously);
        Submit(() =>
        {
            try
            {
                added.SetResult(_engine.AddRequest(request, new ChannelSink(channel.Writer)));
            }
            catch (Exception e)
            {
                added.SetException(e);
            }
        });
        var handle = await added.Task.ConfigureAwait(false);
        return new RequestStream(this, handle, channel.Reader);
    }

    /// <summary>Runs a request to its end and returns the result.</summary>
    public async Task<RequestResult> GenerateAsync(EngineRequest request, CancellationToken cancellationToken = default)
    {
        await foreach (var item in Generate(request, cancellationToken).ConfigureAwait(false))
        {
            if (item is RequestFinished finished)
            {
                return finished.Result;
            }
        }
        throw new InvalidOperationException($"request '{request.RequestId}' ended without a result");
    }

    /// <summary>Aborts the running request with id <paramref name="requestId"/>, if there is one when the step loop gets to it.</summary>
    public void Abort(string requestId) => Submit(() => _engine.Abort(requestId));

    /// <summary>Aborts the request of <paramref name="handle"/> if it is still running; never a later request with its id.</summary>
    public void Abort(RequestHandle handle) => Submit(() => _engine.Abort(handle));

    /// <summary>Runs <paramref name="action"/> on the step thread between steps and returns its result.</summary>
    public Task<T> InvokeAsync<T>(Func<LlmEngine, T> action)
    {
        var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Submit(() =>
        {
            try
            {
                result.SetResult(action(_engine));
            }
            catch (Exception e)
            {
                result.SetException(e);
            }
        });
        return result.Task;
    }

    private void Submit(Action command)
    {
        lock (_submitLock)
        {
            if (_closed)
            {
                throw new InvalidOperationException(_fault is null ? "the engine has stopped" : "the engine's step loop has failed", _fault);
            }
            _commands.Enqueue(command);
            _wake.Release();
        }
    }

    private void WakeForArrivals()
    {
        try
        {
            _wake.Release();
        }
        catch (ObjectDisposedException)
        {
            // Shutting down: nothing waits for the blocks any more.
        }
    }

    private void RunLoop()
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                while (_commands.TryDequeue(out var command))
                {
                    command();
                }
                var started = Stopwatch.GetTimestamp();
                if (_engine.Step())
                {
                    StepTimes.Record(Stopwatch.GetElapsedTime(started));
                }
                else
                {
                    _wake.Wait(_stop.Token);
                }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            Volatile.Write(ref _fault, e);
            _engine.FailAll(e);
        }
        finally
        {
            CloseQueue();
        }
        if (_fault is { } fault)
        {
            _failed.TrySetResult(fault);
        }
    }

    /// <summary>Refuses new commands, runs those already queued, and fails every request still unfinished.</summary>
    private void CloseQueue()
    {
        lock (_submitLock)
        {
            _closed = true;
        }
        while (_commands.TryDequeue(out var command))
        {
            command();
        }
        _engine.FailAll(_fault ?? new OperationCanceledException("the engine stopped before the request finished"));
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _loop.Join();
        _engine.Dispose();
        _stop.Dispose();
        _wake.Dispose();
    }

    /// <summary>
    /// The events of one accepted request: deltas, then one <see cref="RequestFinished"/>. Disposing it (or cancelling
    /// <see cref="ReadAllAsync"/>) before the finish was read aborts the request and frees its blocks. Aborts go by
    /// handle, so a stream whose request already finished aborts nothing, even when a newer request reuses its id.
    /// </summary>
    public sealed class RequestStream : IDisposable
    {
        private readonly AsyncEngine _owner;
        private readonly RequestHandle _handle;
        private int _done;

        internal RequestStream(AsyncEngine owner, RequestHandle handle, ChannelReader<RequestEvent> reader)
        {
            _owner = owner;
            _handle = handle;
            Reader = reader;
        }

        public string RequestId => _handle.RequestId;

        /// <summary>The raw events; a reader that drains it with TryRead can batch its writes. Call <see cref="MarkFinished"/> on the finish.</summary>
        public ChannelReader<RequestEvent> Reader { get; }

        /// <summary>Records that the finish was read, so disposing aborts nothing.</summary>
        public void MarkFinished() => Volatile.Write(ref _done, 1);

        public async IAsyncEnumerable<RequestEvent> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            try
            {
                await foreach (var item in Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                {
                    if (item is RequestFinished)
                    {
                        MarkFinished();
                    }
                    yield return item;
                }
            }
            finally
            {
                Dispose();
            }
        }

        /// <summary>Aborts the request if it is still running; its finish (reason abort) still comes on <see cref="Reader"/>.</summary>
        public void Abort()
        {
            try
            {
                _owner.Abort(_handle);
            }
            catch (InvalidOperationException)
            {
                // The step loop has stopped; it failed every unfinished request already.
            }
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0)
            {
                Abort();
            }
        }
    }

    private sealed class ChannelSink(ChannelWriter<RequestEvent> writer) : IRequestSink
    {
        public void OnDelta(StreamDelta delta) => writer.TryWrite(new RequestDelta(delta));

        public void OnFinished(RequestResult result)
        {
            writer.TryWrite(new RequestFinished(result));
            writer.TryComplete();
        }
    }
}
