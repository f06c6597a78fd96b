using System.IO.Hashing;
using System.Text;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;

namespace RouteReplay.Backends.Cuda;

/// <summary>Weights: uploaded from a checkpoint through a page-locked buffer, made on the device at random, or reloaded.</summary>
public sealed partial class CudaBackend : IReloadableBackend
{
    private const int UploadSliceBytes = 64 << 20;

    /// <summary>Threads reading and copying weights at once (each with its own page-locked slice).</summary>
    private static readonly int UploadThreads = Math.Clamp(Environment.ProcessorCount, 1, 8);

    /// <summary>Bytes of bf16 weights on the device (a tied embedding counted once).</summary>
    public long WeightBytes { get; private set; }

    public PreparedWeights PrepareWeights(Checkpoint checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        if (!checkpoint.Config.Equals(Config))
        {
            throw new ArgumentException($"the checkpoint in '{checkpoint.Directory}' does not match the served model's architecture", "model_path");
        }
        foreach (var tensor in DeviceTensorMap.Tensors(Config, checkpoint.HasTensor))
        {
            if (!checkpoint.HasTensor(tensor.Name))
            {
                throw new ArgumentException($"the checkpoint in '{checkpoint.Directory}' has no tensor '{tensor.Name}'", "model_path");
            }
        }
        return new CheckpointWeights(checkpoint.Directory);
    }

    /// <summary>
    /// Copies the prepared checkpoint's (or shared tensors', <see cref="ApplyIpcWeights"/>) weights over the device's;
    /// between steps, with no request running. Released weights get their device memory back first (any host copy is
    /// dropped, not copied), so they are resident after.
    /// </summary>
    public void ApplyWeights(PreparedWeights weights)
    {
        if (weights is IpcWeights shared)
        {
            ApplyIpcWeights(shared);
            return;
        }
        if (weights is not CheckpointWeights prepared)
        {
            throw new ArgumentException("the weights were not prepared by a CUDA backend", nameof(weights));
        }
        using var checkpoint = Checkpoint.Open(prepared.Directory);
        if (Weights != WeightsResidence.Resident)
        {
            CudaNative.Check(CudaNative.WeightsRestore(_model, copyBack: 0), "allocating the weights for new ones");
            Weights = WeightsResidence.Resident;
        }
        Upload(checkpoint);
    }

    /// <summary>
    /// Cuts every tensor into slices of at most <see cref="UploadSliceBytes"/> and uploads them from several threads,
    /// each reading its slices from the mapped files into its own page-locked buffer and copying them to the device,
    /// so the reads (page cache to pinned memory, converting to bf16 where needed) overlap each other and the copies.
    /// </summary>
    private void Upload(Checkpoint checkpoint)
    {
        List<UploadSlice> slices = [];
        long total = 0;
        foreach (var tensor in DeviceTensorMap.Tensors(Config, checkpoint.HasTensor))
        {
            var (device, _) = Locate(tensor);
            for (long done = 0; done < tensor.Elements; done += UploadSliceBytes / 2)
            {
                slices.Add(new UploadSlice(tensor, device + (nint)(done * 2), done, (int)Math.Min(UploadSliceBytes / 2, tensor.Elements - done)));
            }
            total += tensor.Elements * 2;
        }
        var threads = Math.Min(UploadThreads, slices.Count);
        try
        {
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, worker => UploadEvery(checkpoint, slices, worker, threads));
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }
        WeightBytes = total;
    }

    private unsafe void UploadEvery(Checkpoint checkpoint, List<UploadSlice> slices, int first, int stride)
    {
        using var staging = PageLockedHostBuffer.Allocate(UploadSliceBytes);
        for (var i = first; i < slices.Count; i += stride)
        {
            var (tensor, device, firstElement, count) = slices[i];
            var bytes = staging.AsSpan<byte>(0, count * 2);
            checkpoint.ReadBFloat16(tensor.Name, firstElement, bytes, tensor.Shape);
            CudaNative.Check(CudaNative.Upload(_model, device, (void*)staging.Address, (ulong)bytes.Length), $"uploading '{tensor.Name}'");
        }
    }

    private readonly record struct UploadSlice(DeviceTensor Tensor, nint Device, long FirstElement, int Count);

    /// <summary>
    /// Every tensor the layout of make-model lists (per-expert experts), drawn on the device from make-model's
    /// distribution for its role, seeded from (seed, tensor name).
    /// </summary>
    private void FillRandom(ulong seed)
    {
        var specs = WeightLayout.Enumerate(Config).ToDictionary(spec => spec.Name);
        long total = 0;
        foreach (var tensor in DeviceTensorMap.Tensors(Config, _ => false))
        {
            var (device, _) = Locate(tensor);
            var (mean, standardDeviation) = RandomWeightGenerator.Distribution(specs[tensor.Name]);
            var tensorSeed = SplitMix64.Mix(SplitMix64.Mix(seed) ^ XxHash64.HashToUInt64(Encoding.UTF8.GetBytes(tensor.Name)));
            CudaNative.Check(
                CudaNative.FillNormal(_model, device, (ulong)tensor.Elements, tensorSeed, (float)mean, (float)standardDeviation),
                $"filling '{tensor.Name}'");
            total += tensor.Elements * 2;
        }
        WeightBytes = total;
    }

    /// <summary>The device address of the tensor's first element, checked against the device tensor's size.</summary>
    private (nint Device, long Bytes) Locate(DeviceTensor tensor)
    {
        CudaNative.Check(CudaNative.Tensor(_model, (int)tensor.Kind, tensor.Layer, out var device, out var bytes), $"locating '{tensor.Name}'");
        if ((tensor.ElementOffset + tensor.Elements) * 2 > (long)bytes)
        {
            throw new InvalidOperationException($"'{tensor.Name}' does not fit its device tensor ({bytes} bytes)");
        }
        return (device + (nint)(tensor.ElementOffset * 2), (long)bytes);
    }

    private sealed class CheckpointWeights(string directory) : PreparedWeights
    {
        public string Directory { get; } = directory;
    }
}
