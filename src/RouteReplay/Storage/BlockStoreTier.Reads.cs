using System.Buffers;
using System.Diagnostics;
using RouteReplay.Cache;

namespace RouteReplay.Storage;

/// <summary>The lookup path: a run of blocks read in windows on the thread pool, verified in order, per node.</summary>
public sealed partial class BlockStoreTier
{
    private async Task RunLoadAsync(StoreLoad load)
    {
        try
        {
            for (var start = 0; start < load.BlockCount; start += ReadWindow)
            {
                if (!await ReadWindowAsync(load, start, Math.Min(ReadWindow, load.BlockCount - start)).ConfigureAwait(false))
                {
                    return;
                }
            }
        }
        catch (Exception e)
        {
            Stats.CountError(_store.Description);
            _health.ReportFailure(_store.Description, e);
        }
        finally
        {
            Stats.LoadLatency.Record(Stopwatch.GetElapsedTime(load.StartedAt));
            _completed.Enqueue(load);
            _loadSignal.Release();
            LoadCompleted?.Invoke();
        }
    }

    /// <summary>
    /// Reads blocks <c>[start, start + count)</c> at once, up to the first whose node is down, and verifies them in
    /// order; false when the run ended.
    /// </summary>
    private async Task<bool> ReadWindowAsync(StoreLoad load, int start, int count)
    {
        var nodes = new string[count];
        var reachable = count;
        for (var i = 0; i < count; i++)
        {
            nodes[i] = _store.NodeOf(load.Keys[start + i]);
            if (!_health.IsUp(nodes[i]))
            {
                reachable = i;
                break;
            }
        }
        using var timeout = new CancellationTokenSource(_settings.Timeout);
        var reads = new Task<IMemoryOwner<byte>?>[reachable];
        for (var i = 0; i < reachable; i++)
        {
            reads[i] = Read(load.Keys[start + i], timeout.Token);
        }
        try
        {
            await Task.WhenAll(reads).ConfigureAwait(false);
        }
        catch
        {
            // Each read's outcome is looked at below.
        }
        var running = true;
        for (var i = 0; i < reachable; i++)
        {
            var read = reads[i];
            if (!running)
            {
                if (read.IsCompletedSuccessfully)
                {
                    read.Result?.Dispose();
                }
                continue;
            }
            running = Accept(load, start + i, read, nodes[i]);
        }
        if (running && reachable < count)
        {
            Stats.CountSkipped(nodes[reachable]);
            return false;
        }
        return running;
    }

    private Task<IMemoryOwner<byte>?> Read(BlockKey key, CancellationToken cancellationToken)
    {
        try
        {
            return _store.GetAsync(key, cancellationToken).AsTask();
        }
        catch (Exception e)
        {
            return Task.FromException<IMemoryOwner<byte>?>(e);
        }
    }

    private bool Accept(StoreLoad load, int block, Task<IMemoryOwner<byte>?> read, string node)
    {
        if (!read.IsCompletedSuccessfully)
        {
            Stats.CountError(node);
            _health.ReportFailure(node, read.IsCanceled
                ? new TimeoutException($"a read took longer than {_settings.Timeout.TotalMilliseconds:F0} ms")
                : read.Exception!.InnerException ?? read.Exception);
            return false;
        }
        if (read.Result is not { } value)
        {
            Stats.CountMiss(node);
            return false;
        }
        var status = _codec.Verify(value.Memory.Span, load.Fingerprint, load.Keys[block], load.Parents[block], load.BlockTokens(block), out _);
        if (status != PayloadCodecStatus.Ok)
        {
            if (IsCorruption(status))
            {
                Stats.CountCorrupt(value.Memory.Length);
            }
            else
            {
                Stats.CountRejected(value.Memory.Length);
            }
            MarkForOverwrite(load.Keys[block]);
            value.Dispose();
            return false;
        }
        Stats.CountHit(node, value.Memory.Length);
        load.Values[block] = value;
        load.Loaded = block + 1;
        return true;
    }

    /// <summary>The value stored under <paramref name="key"/> failed verification: the next write of the key replaces it.</summary>
    private void MarkForOverwrite(BlockKey key)
    {
        if (_overwrite.Count >= RememberedKeys)
        {
            _overwrite.Clear();
        }
        _overwrite.TryAdd(key, 0);
    }

    private static bool IsCorruption(PayloadCodecStatus status) => status is PayloadCodecStatus.Truncated or PayloadCodecStatus.LengthMismatch
        or PayloadCodecStatus.BadMagic or PayloadCodecStatus.UnsupportedFormatVersion or PayloadCodecStatus.ChecksumMismatch or PayloadCodecStatus.MalformedHeader;
}
