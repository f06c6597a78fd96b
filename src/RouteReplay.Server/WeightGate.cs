namespace RouteReplay.Server;

/// <summary>
/// Lets generation requests run side by side and a weight update run alone: while an update is pending, new requests
/// wait at <see cref="EnterAsync"/> and the update waits for the requests already inside to leave.
/// </summary>
public sealed class WeightGate
{
    private readonly Lock _lock = new();
    private readonly SemaphoreSlim _updates = new(1, 1);
    private int _active;
    private int _waiting;
    private bool _updating;
    private TaskCompletionSource _resumed = Completed();
    private TaskCompletionSource _drained = Completed();

    /// <summary>Requests inside the gate.</summary>
    public int Active
    {
        get
        {
            lock (_lock)
            {
                return _active;
            }
        }
    }

    /// <summary>Requests waiting for an update to finish.</summary>
    public int Waiting => Volatile.Read(ref _waiting);

    /// <summary>Enters as a request; dispose the result to leave.</summary>
    public async Task<Pass> EnterAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task resumed;
            lock (_lock)
            {
                if (!_updating)
                {
                    _active++;
                    return new Pass(this);
                }
                resumed = _resumed.Task;
            }
            Interlocked.Increment(ref _waiting);
            try
            {
                await resumed.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                Interlocked.Decrement(ref _waiting);
            }
        }
    }

    /// <summary>
    /// Closes the gate to new requests and returns once every request inside has left (<paramref name="whileDraining"/>
    /// runs after closing, e.g. to abort them). Dispose the result to reopen.
    /// </summary>
    public async Task<UpdatePass> BeginUpdateAsync(Func<Task>? whileDraining, CancellationToken cancellationToken)
    {
        await _updates.WaitAsync(cancellationToken).ConfigureAwait(false);
        Task drained;
        lock (_lock)
        {
            _updating = true;
            _resumed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (_active == 0)
            {
                _drained.SetResult();
            }
            drained = _drained.Task;
        }
        var pass = new UpdatePass(this);
        try
        {
            if (whileDraining is not null)
            {
                await whileDraining().ConfigureAwait(false);
            }
            await drained.WaitAsync(cancellationToken).ConfigureAwait(false);
            return pass;
        }
        catch
        {
            pass.Dispose();
            throw;
        }
    }

    private void Leave()
    {
        lock (_lock)
        {
            _active--;
            if (_updating && _active == 0)
            {
                _drained.TrySetResult();
            }
        }
    }

    private void EndUpdate()
    {
        lock (_lock)
        {
            _updating = false;
            _resumed.TrySetResult();
        }
        _updates.Release();
    }

    private static TaskCompletionSource Completed()
    {
        var source = new TaskCompletionSource();
        source.SetResult();
        return source;
    }

    public sealed class Pass(WeightGate gate) : IDisposable
    {
        private int _left;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _left, 1) == 0)
            {
                gate.Leave();
            }
        }
    }

    public sealed class UpdatePass(WeightGate gate) : IDisposable
    {
        private int _ended;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _ended, 1) == 0)
            {
                gate.EndUpdate();
            }
        }
    }
}
