using System.Buffers;
using Microsoft.Win32.SafeHandles;
using RouteReplay.Cache;

namespace RouteReplay.Storage;

/// <summary>
/// Block values as files: <c>DIR/ab/abcdef....kvblock</c>, one per key, fanned out over 256 folders by the key's first
/// two hex digits. Several processes may share a folder at once.
/// </summary>
/// <remarks>
/// <para>Writes go to a temporary name in the same folder, then are renamed over the final name, so a reader or a
/// crash never sees a torn value (a rename within a file system is atomic).</para>
/// <para>Size cap: each process tracks an estimate of the folder's bytes (a scan at start, then its own writes, a
/// fresh scan every <see cref="RescanEveryWrites"/> writes to see other processes'). When the estimate passes the
/// cap, a scan deletes the least recently used values (oldest modification time; a hit refreshes it) until the folder
/// holds at most 90% of the cap, and removes temporary files left by crashed writers.</para>
/// </remarks>
public sealed class FileBlockStore : IBlockStore
{
    /// <summary>The file name suffix of a stored value.</summary>
    public const string Extension = ".kvblock";

    private const int RescanEveryWrites = 4096;
    private static readonly TimeSpan StaleTemporaryAge = TimeSpan.FromMinutes(10);

    private readonly string _root;
    private readonly long _maxBytes;
    private readonly SemaphoreSlim _evicting = new(1, 1);
    private long _estimatedBytes;
    private long _writesSinceScan;
    private int _rescanRequested;
    private long _temporaryCounter;
    private long _evictions;
    private volatile bool _disposed;

    /// <param name="directory">The folder; created when missing.</param>
    /// <param name="maxBytes">The size cap; 0 for none.</param>
    public FileBlockStore(string directory, long maxBytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentOutOfRangeException.ThrowIfNegative(maxBytes);
        _root = Path.GetFullPath(directory);
        if (File.Exists(_root))
        {
            throw new ArgumentException($"the block store folder '{directory}' is a file", nameof(directory));
        }
        _maxBytes = maxBytes;
        Directory.CreateDirectory(_root);
        Description = $"file:{_root}";
        _ = Task.Run(Rescan);
    }

    public string Description { get; }

    /// <summary>Values deleted by the size cap (by this process).</summary>
    public long Evictions => Interlocked.Read(ref _evictions);

    /// <summary>The path of the file holding <paramref name="key"/>'s value.</summary>
    public string PathOf(BlockKey key)
    {
        var hex = key.ToString();
        return Path.Combine(_root, hex[..2], hex + Extension);
    }

    public async ValueTask PutAsync(BlockKey key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken)
    {
        var path = PathOf(key);
        var folder = Path.GetDirectoryName(path)!;
        Directory.CreateDirectory(folder);
        var temporary = Path.Combine(folder, $".{Path.GetFileNameWithoutExtension(path)}.{Environment.ProcessId}.{Interlocked.Increment(ref _temporaryCounter)}.tmp");
        try
        {
            using (var handle = File.OpenHandle(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, FileOptions.Asynchronous, value.Length))
            {
                await RandomAccess.WriteAsync(handle, value, 0, cancellationToken).ConfigureAwait(false);
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
        var estimate = Interlocked.Add(ref _estimatedBytes, value.Length);
        if (Interlocked.Increment(ref _writesSinceScan) >= RescanEveryWrites || (_maxBytes > 0 && estimate > _maxBytes))
        {
            _ = Task.Run(Rescan, CancellationToken.None);
        }
    }

    /// <summary>A folder is one node.</summary>
    public string NodeOf(BlockKey key) => Description;

    /// <summary>True when the key's file exists; refreshes its age for the size cap, as a hit does.</summary>
    public ValueTask<bool> ContainsAsync(BlockKey key, CancellationToken cancellationToken)
    {
        var path = PathOf(key);
        if (!File.Exists(path))
        {
            return ValueTask.FromResult(false);
        }
        Touch(path);
        return ValueTask.FromResult(true);
    }

    /// <summary>Creates (when missing) the folder and a file in it, which is deleted again: the folder can be written.</summary>
    public ValueTask ProbeAsync(string node, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(_root);
        var probe = Path.Combine(_root, $".probe.{Environment.ProcessId}.{Interlocked.Increment(ref _temporaryCounter)}.tmp");
        File.OpenHandle(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, FileOptions.DeleteOnClose).Dispose();
        return ValueTask.CompletedTask;
    }

    public async ValueTask<IMemoryOwner<byte>?> GetAsync(BlockKey key, CancellationToken cancellationToken)
    {
        var path = PathOf(key);
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, FileOptions.Asynchronous);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        using (handle)
        {
            var length = RandomAccess.GetLength(handle);
            if (length > int.MaxValue / 2)
            {
                throw new InvalidDataException($"{path} has {length} bytes, more than any block value");
            }
            var value = new PooledValue((int)length);
            try
            {
                var read = 0;
                while (read < length)
                {
                    var n = await RandomAccess.ReadAsync(handle, value.Memory[read..], read, cancellationToken).ConfigureAwait(false);
                    if (n == 0)
                    {
                        break;
                    }
                    read += n;
                }
                if (read < length)
                {
                    value.Dispose();
                    return new PooledValue(0);
                }
            }
            catch
            {
                value.Dispose();
                throw;
            }
            Touch(path);
            return value;
        }
    }

    public ValueTask<long> ClearAsync(CancellationToken cancellationToken)
    {
        long deleted = 0;
        foreach (var path in Directory.EnumerateFiles(_root, "*" + Extension, SearchOption.AllDirectories))
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (TryRemove(path))
            {
                deleted++;
            }
        }
        Interlocked.Exchange(ref _estimatedBytes, 0);
        return ValueTask.FromResult(deleted);
    }

    /// <summary>
    /// Scans the folder, then evicts least recently used values while it holds more than the cap. A scan asked for
    /// while one runs is not lost: the running one scans again, so the last write's value is always counted.
    /// </summary>
    private void Rescan()
    {
        Volatile.Write(ref _rescanRequested, 1);
        while (!_disposed && Volatile.Read(ref _rescanRequested) == 1 && _evicting.Wait(0))
        {
            try
            {
                while (!_disposed && Interlocked.Exchange(ref _rescanRequested, 0) == 1)
                {
                    ScanAndEvict();
                }
            }
            finally
            {
                _evicting.Release();
            }
        }
    }

    private void ScanAndEvict()
    {
        try
        {
            Interlocked.Exchange(ref _writesSinceScan, 0);
            var estimateAtStart = Interlocked.Read(ref _estimatedBytes);
            var files = new List<(string Path, long Bytes, DateTime UsedAt)>();
            long total = 0;
            var now = DateTime.UtcNow;
            foreach (var info in new DirectoryInfo(_root).EnumerateFiles("*", SearchOption.AllDirectories))
            {
                try
                {
                    if (info.Name.EndsWith(".tmp", StringComparison.Ordinal))
                    {
                        if (now - info.LastWriteTimeUtc > StaleTemporaryAge)
                        {
                            TryDelete(info.FullName);
                        }
                        continue;
                    }
                    if (info.Name.EndsWith(Extension, StringComparison.Ordinal))
                    {
                        files.Add((info.FullName, info.Length, info.LastWriteTimeUtc));
                        total += info.Length;
                    }
                }
                catch (IOException)
                {
                    // Deleted or replaced by another process during the scan.
                }
            }
            if (_maxBytes > 0 && total > _maxBytes)
            {
                var target = _maxBytes / 10 * 9;
                files.Sort((a, b) => a.UsedAt.CompareTo(b.UsedAt));
                foreach (var (path, bytes, _) in files)
                {
                    if (total <= target)
                    {
                        break;
                    }
                    if (TryDelete(path))
                    {
                        Interlocked.Increment(ref _evictions);
                    }
                    total -= bytes;
                }
            }
            // Writes that landed during the scan stay in the estimate (counted twice at worst, which only scans sooner).
            if (Interlocked.Add(ref _estimatedBytes, total - estimateAtStart) is var estimate and < 0)
            {
                Interlocked.CompareExchange(ref _estimatedBytes, 0, estimate);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The next write retries the scan.
        }
    }

    private static void Touch(string path)
    {
        try
        {
            File.SetLastWriteTimeUtc(path, DateTime.UtcNow);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Replaced or evicted meanwhile: the value was read whole all the same.
        }
    }

    /// <summary>
    /// Deletes a value and says whether this call removed it: another process clearing the same folder at once may
    /// have taken it first (a plain delete of a missing file succeeds, so each value would count once per process).
    /// The value is renamed to a temporary name of this process first, which only one process can do.
    /// </summary>
    private bool TryRemove(string path)
    {
        var taken = Path.Combine(Path.GetDirectoryName(path)!, $".{Path.GetFileNameWithoutExtension(path)}.{Environment.ProcessId}.{Interlocked.Increment(ref _temporaryCounter)}.tmp");
        try
        {
            File.Move(path, taken);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
        TryDelete(taken);
        return true;
    }

    private static bool TryDelete(string path)
    {
        try
        {
            File.Delete(path);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Waits for a running scan to end; later scans do nothing.</summary>
    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        await _evicting.WaitAsync().ConfigureAwait(false);
        _evicting.Release();
    }
}
