using System.Buffers;
using RouteReplay.Cache;
using RouteReplay.Storage;

namespace RouteReplay.Tests.Support;

/// <summary>A real store whose reads or writes wait until the test opens their gate: a store that is slow on demand.</summary>
public sealed class GatedStore : IBlockStore
{
    private readonly IBlockStore _inner;

    public GatedStore(IBlockStore inner, bool gateReads, bool gateWrites)
    {
        _inner = inner;
        if (!gateReads)
        {
            OpenReads();
        }
        if (!gateWrites)
        {
            OpenWrites();
        }
    }

    private TaskCompletionSource _reads = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _writes = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private int _waitingReads;
    private int _waitingWrites;

    public string Description => "gated " + _inner.Description;

    public int WaitingReads => Volatile.Read(ref _waitingReads);

    public int WaitingWrites => Volatile.Read(ref _waitingWrites);

    public void OpenReads() => _reads.TrySetResult();

    /// <summary>Makes later reads wait again (reads already let through are not affected).</summary>
    public void CloseReads() => Volatile.Write(ref _reads, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));

    public void OpenWrites() => _writes.TrySetResult();

    public string NodeOf(BlockKey key) => _inner.NodeOf(key);

    public ValueTask<bool> ContainsAsync(BlockKey key, CancellationToken cancellationToken) => _inner.ContainsAsync(key, cancellationToken);

    public ValueTask ProbeAsync(string node, CancellationToken cancellationToken) => _inner.ProbeAsync(node, cancellationToken);

    public async ValueTask PutAsync(BlockKey key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _waitingWrites);
        await _writes.Task.ConfigureAwait(false);
        Interlocked.Decrement(ref _waitingWrites);
        await _inner.PutAsync(key, value, cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask<IMemoryOwner<byte>?> GetAsync(BlockKey key, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _waitingReads);
        await Volatile.Read(ref _reads).Task.ConfigureAwait(false);
        Interlocked.Decrement(ref _waitingReads);
        return await _inner.GetAsync(key, cancellationToken).ConfigureAwait(false);
    }

    public ValueTask<long> ClearAsync(CancellationToken cancellationToken) => _inner.ClearAsync(cancellationToken);

    public ValueTask DisposeAsync()
    {
        OpenReads();
        OpenWrites();
        return _inner.DisposeAsync();
    }
}
