using System.Buffers;
using RouteReplay.Cache;

namespace RouteReplay.Storage;

/// <summary>The write path: writer tasks on the thread pool, each writing one queued block at a time.</summary>
public sealed partial class BlockStoreTier
{
    private async Task WriteLoop()
    {
        await foreach (var job in _writes.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            var key = job.Header.Key!.Value;
            var node = _store.Description;
            try
            {
                if (job.Epoch != Epoch)
                {
                    continue;
                }
                node = _store.NodeOf(key);
                if (!_health.IsUp(node))
                {
                    Stats.CountFailedWrite(node);
                    _unwritten.Enqueue(key);
                    continue;
                }
                await WriteAsync(job, key, node).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                Stats.CountFailedWrite(node);
                _unwritten.Enqueue(key);
                _health.ReportFailure(node, e is OperationCanceledException ? new TimeoutException($"a write took longer than {_settings.Timeout.TotalMilliseconds:F0} ms") : e);
            }
            finally
            {
                job.Value.Dispose();
                ArrayPool<int>.Shared.Return(job.Tokens);
                Stats.QueuedWrites = Interlocked.Decrement(ref _queued);
            }
        }
    }

    /// <summary>Writes the job's value unless the store already holds one under its key (that verified when last read).</summary>
    private async Task WriteAsync(WriteJob job, BlockKey key, string node)
    {
        using var timeout = new CancellationTokenSource(_settings.Timeout);
        if (!_overwrite.TryRemove(key, out _) && await _store.ContainsAsync(key, timeout.Token).ConfigureAwait(false))
        {
            Stats.CountAlreadyStored(node);
            return;
        }
        timeout.CancelAfter(_settings.Timeout);
        _codec.Seal(job.Header, job.Tokens.AsSpan(0, job.TokenCount), job.Value.Memory.Span);
        await _store.PutAsync(key, job.Value.Memory, timeout.Token).ConfigureAwait(false);
        Stats.CountWrite(node, job.Value.Length);
    }

    private sealed record WriteJob(long Epoch, PayloadHeader Header, int[] Tokens, int TokenCount, PooledValue Value);
}
