using System.Collections.Concurrent;
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
    private Exception? _fault;

    public AsyncEngine(LlmEngine engine)
    {
        _engine = engine;
        _loop = new Thread(RunLoop) { IsBackground = true, Name = "routereplay-step-loop" };
        _loop.Start();
    }

    public LlmEngine Engine => _engine;

    /// <summary>Queues <paramref name="request"/> and streams its events. Invalid requests throw before anything is queued.</summary>
    public async IAsyncEnumerable<RequestEvent> Generate(EngineRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var channel = Channel.CreateUnbounded<RequestEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var added = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Submit(() =>
        {
            try
            {
                _engine.AddRequest(request, new ChannelSink(channel.Writer));
                added.SetResult();
            }
            catch (Exception e)
            {
                added.SetException(e);
            }
        });
        await added.Task.ConfigureAwait(false);
        var finished = false;
        try
        {
            await foreach (var item in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                finished = item is RequestFinished;
                yield return item;
            }
        }
        finally
        {
            if (!finished)
            {
                Abort(request.RequestId);
            }
        }
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

    public void Abort(string requestId) => Submit(() => _engine.Abort(requestId));

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
        if (_fault is not null)
        {
            throw new InvalidOperationException("the engine's step loop has failed", _fault);
        }
        _commands.Enqueue(command);
        _wake.Release();
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
                if (!_engine.Step())
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
            _fault = e;
            _engine.FailAll(e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _loop.Join();
        _engine.Dispose();
        _stop.Dispose();
        _wake.Dispose();
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
