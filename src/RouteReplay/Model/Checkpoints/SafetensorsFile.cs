using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;

namespace RouteReplay.Model.Checkpoints;

/// <summary>
/// A read-only, memory-mapped safetensors file: an 8-byte little-endian header length N, N bytes of JSON
/// describing each tensor, then the data section the tensors' offsets point into.
/// Reads are thread-safe; the header is fully validated on <see cref="Open"/>.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>Headers past this size are rejected, as the reference implementation does.</summary>
    private const long MaxHeaderBytes = 100_000_000;

    /// <summary>Conversion works in slices of this many elements, so tensors past 2 GiB of bytes are readable.</summary>
    private const int ConversionSliceElements = 1 << 24;

    private readonly MemoryMappedFile _mappedFile;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _data;
    private bool _disposed;

    private SafetensorsFile(string path, MemoryMappedFile mappedFile, MemoryMappedViewAccessor view, byte* data,
        Dictionary<string, TensorInfo> tensors)
    {
        Path = path;
        _mappedFile = mappedFile;
        _view = view;
        _data = data;
        Tensors = tensors;
    }

    /// <summary>The path the file was opened from.</summary>
    public string Path { get; }

    /// <summary>The tensors in the file, by name (the <c>__metadata__</c> entry is not included).</summary>
    public IReadOnlyDictionary<string, TensorInfo> Tensors { get; }

    /// <summary>Maps <paramref name="path"/> and validates its header.</summary>
    /// <exception cref="CheckpointException">The file is missing, unreadable, malformed or truncated.</exception>
    public static SafetensorsFile Open(string path)
    {
        var stream = OpenStream(path);
        MemoryMappedFile? mappedFile = null;
        MemoryMappedViewAccessor? view = null;
        var pointerAcquired = false;
        try
        {
            var fileLength = stream.Length;
            if (fileLength < sizeof(ulong))
            {
                throw new CheckpointException(
                    path, null, $"{path}: the file is {fileLength} bytes, too short for the 8-byte safetensors header length");
            }
            mappedFile = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = mappedFile.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* start = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref start);
            pointerAcquired = true;
            start += view.PointerOffset;

            var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(start, sizeof(ulong)));
            if (headerLength > (ulong)(fileLength - sizeof(ulong)))
            {
                throw new CheckpointException(
                    path, null, $"{path}: the header length field says {headerLength} bytes, but the file holds only {fileLength - sizeof(ulong)} after it");
            }
            if (headerLength > MaxHeaderBytes)
            {
                throw new CheckpointException(
                    path, null, $"{path}: the header length field says {headerLength} bytes, past the {MaxHeaderBytes}-byte limit");
            }
            var header = new ReadOnlySpan<byte>(start + sizeof(ulong), (int)headerLength);
            var dataStart = sizeof(ulong) + (long)headerLength;
            var tensors = SafetensorsHeaderParser.Parse(header, fileLength - dataStart, path);
            return new SafetensorsFile(path, mappedFile, view, start + dataStart, tensors);
        }
        catch
        {
            if (pointerAcquired)
            {
                view!.SafeMemoryMappedViewHandle.ReleasePointer();
            }
            view?.Dispose();
            mappedFile?.Dispose();
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Converts the tensor <paramref name="name"/> to fp32 into <paramref name="destination"/>.</summary>
    /// <exception cref="CheckpointException">The file has no tensor of that name.</exception>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is not exactly the tensor's element count.</exception>
    public void ReadAsFloat32(string name, Span<float> destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!Tensors.TryGetValue(name, out var info))
        {
            throw new CheckpointException(Path, name, $"{Path}: tensor '{name}' not found");
        }
        if (destination.Length != info.ElementCount)
        {
            throw new ArgumentException(
                $"tensor '{name}' in {Path} has {info.ElementCount} elements (shape {TensorShapes.Format(info.Shape)}), " +
                $"but the destination holds {destination.Length}",
                nameof(destination));
        }
        var elementSize = TensorDTypes.SizeOf(info.DType);
        var source = _data + info.DataOffset;
        for (var done = 0; done < destination.Length; done += ConversionSliceElements)
        {
            var count = Math.Min(ConversionSliceElements, destination.Length - done);
            var bytes = new ReadOnlySpan<byte>(source + ((long)done * elementSize), count * elementSize);
            FloatConversion.ToFloat32(info.DType, bytes, destination.Slice(done, count));
        }
    }

    /// <summary>The raw bytes of tensor <paramref name="name"/>, valid while the file is open.</summary>
    /// <exception cref="CheckpointException">The file has no tensor of that name.</exception>
    public ReadOnlySpan<byte> Bytes(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!Tensors.TryGetValue(name, out var info))
        {
            throw new CheckpointException(Path, name, $"{Path}: tensor '{name}' not found");
        }
        return new ReadOnlySpan<byte>(_data + info.DataOffset, checked((int)(info.ElementCount * TensorDTypes.SizeOf(info.DType))));
    }

    /// <summary>
    /// Copies elements <c>[firstElement, firstElement + destination.Length / 2)</c> of tensor <paramref name="name"/>
    /// into <paramref name="destination"/> as little-endian bf16: bf16 data unchanged, fp32 and f16 rounded to the
    /// nearest bf16 (ties to even).
    /// </summary>
    /// <exception cref="CheckpointException">The file has no tensor of that name.</exception>
    /// <exception cref="ArgumentException">The range is outside the tensor.</exception>
    public void ReadAsBFloat16(string name, long firstElement, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!Tensors.TryGetValue(name, out var info))
        {
            throw new CheckpointException(Path, name, $"{Path}: tensor '{name}' not found");
        }
        var count = destination.Length / sizeof(ushort);
        if (destination.Length % sizeof(ushort) != 0 || firstElement < 0 || firstElement + count > info.ElementCount)
        {
            throw new ArgumentException(
                $"elements {firstElement}..{firstElement + count} are outside tensor '{name}' of {info.ElementCount} elements in {Path}",
                nameof(destination));
        }
        var elementSize = TensorDTypes.SizeOf(info.DType);
        var source = _data + info.DataOffset + (firstElement * elementSize);
        if (info.DType == TensorDType.BF16)
        {
            new ReadOnlySpan<byte>(source, destination.Length).CopyTo(destination);
            return;
        }
        Span<float> values = stackalloc float[1024];
        for (var done = 0; done < count; done += values.Length)
        {
            var n = Math.Min(values.Length, count - done);
            FloatConversion.ToFloat32(info.DType, new ReadOnlySpan<byte>(source + ((long)done * elementSize), n * elementSize), values[..n]);
            FloatConversion.Float32ToBFloat16(values[..n], destination.Slice(done * sizeof(ushort), n * sizeof(ushort)));
        }
    }

    /// <summary>Unmaps the file.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _mappedFile.Dispose();
    }

    private static FileStream OpenStream(string path)
    {
        try
        {
            return RegularFiles.OpenRead(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, null, $"{path}: cannot open the safetensors file: {ex.Message}", ex);
        }
    }
}
