using System.Runtime.InteropServices;
using RouteReplay.Backends.Cpu;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Routing;

namespace RouteReplay.Backends.Cuda;

/// <summary>
/// The bf16 Qwen3-MoE forward on an NVIDIA GPU (native/, through <see cref="CudaNative"/>): weights, a paged bf16 KV
/// cache sized from free device memory, and fixed-capacity step buffers live on the device; one step is one packed
/// input copy, the forward (cuBLAS GEMMs, the backend's kernels, MoE routing and expert grouping on the device with
/// no host synchronization), one copy of the logit rows and routing rows into the batch's page-locked buffers, and
/// one synchronization. Forwards and block copies share one stream, so their order is the call order.
/// </summary>
public sealed partial class CudaBackend : IModelBackend
{
    private readonly CudaModelHandle _model;
    private readonly HostBuffer _staging;
    private readonly CudaBackendOptions _options;
    private readonly int[] _lastPosition;
    private bool _perExpertGemms;
    private bool _cudaGraphs = true;

    private unsafe CudaBackend(ModelConfig config, CudaBackendOptions options)
    {
        if (config.ModelType != ModelFamilies.Qwen3Moe)
        {
            throw new NotSupportedException(
                $"the CUDA backend runs {ModelFamilies.Qwen3Moe} models only in this version; model_type '{config.ModelType}' runs with --device cpu");
        }
        CudaLibrary.EnsureLoaded();
        if (config.AttentionBias || config.OutputProjectionBias)
        {
            throw new NotSupportedException("the CUDA backend does not support attention biases (attention_bias: true)");
        }
        Config = config;
        RoutingFormat = RoutingFormat.For(config);
        _options = options;
        _lastPosition = new int[options.MaxNumSeqs];
        var (inverseFrequencies, attentionScaling) = RotaryEmbedding.Schedule(config);
        var layerIsMoe = Enumerable.Range(0, config.NumHiddenLayers).Select(l => config.IsMoeLayer(l) ? (byte)1 : (byte)0).ToArray();
        fixed (float* invFreq = inverseFrequencies)
        fixed (byte* moe = layerIsMoe)
        {
            var native = new ModelConfigNative
            {
                HiddenSize = config.HiddenSize,
                NumLayers = config.NumHiddenLayers,
                NumHeads = config.NumAttentionHeads,
                NumKvHeads = config.NumKeyValueHeads,
                HeadDim = config.HeadDim,
                VocabSize = config.VocabSize,
                IntermediateSize = config.IntermediateSize,
                MoeIntermediateSize = config.MoeIntermediateSize,
                NumExperts = config.NumExperts,
                TopK = config.NumExpertsPerTok,
                NormTopkProb = config.NormTopkProb ? 1 : 0,
                TieWordEmbeddings = config.TieWordEmbeddings ? 1 : 0,
                RmsNormEps = (float)config.RmsNormEps,
                RopeAttentionScaling = attentionScaling,
                RopeInvFreq = invFreq,
                LayerIsMoe = moe,
                BlockSize = options.BlockSize,
                MaxTokens = options.MaxNumBatchedTokens,
                MaxSeqs = options.MaxNumSeqs,
                MaxBlocksPerSeq = options.MaxBlocksPerSequence,
                MaxLogitRows = options.ResolvedMaxLogitRows,
                MaxModelLen = options.MaxModelLen,
                RoutingElementBytes = RoutingFormat.ElementSize,
            };
            var status = CudaNative.ModelCreate(&native, out var handle);
            if (status != CudaNative.Ok)
            {
                throw new CudaException($"creating the model on the GPU failed: {Marshal.PtrToStringUTF8(CudaNative.LastError())}");
            }
            _model = new CudaModelHandle(handle);
        }
        try
        {
            _staging = PageLockedHostBuffer.Allocate(StepPacker.CapacityBytes(
                options.MaxNumBatchedTokens, options.MaxNumSeqs, options.MaxBlocksPerSequence, options.ResolvedMaxLogitRows, RoutingFormat.RowBytes));
            KvBytesPerBlock = checked((int)CudaNative.KvBytesPerBlock(_model));
            DeviceName = ReadDeviceName();
        }
        catch
        {
            _model.Dispose();
            throw;
        }
    }

    /// <summary>Loads a checkpoint's weights (bf16; fp32 and f16 are rounded) and sizes the KV cache.</summary>
    public static CudaBackend Load(Checkpoint checkpoint, CudaBackendOptions options)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        return Build(checkpoint.Config, options, backend => backend.Upload(checkpoint));
    }

    /// <summary>
    /// Random bf16 weights made on the device, a pure function of <paramref name="seed"/> (the same seed gives the
    /// same bytes on any GPU), drawn from the distributions make-model uses, so activations stay in range and every
    /// expert is routed.
    /// </summary>
    public static CudaBackend CreateDummy(ModelConfig config, ulong seed, CudaBackendOptions options)
    {
        ArgumentNullException.ThrowIfNull(config);
        return Build(config, options, backend => backend.FillRandom(seed));
    }

    private static CudaBackend Build(ModelConfig config, CudaBackendOptions options, Action<CudaBackend> initializeWeights)
    {
        var backend = new CudaBackend(config, options);
        try
        {
            initializeWeights(backend);
            if (!options.CudaGraphs)
            {
                backend.CudaGraphs = false;
            }
            backend.AllocateKvCache();
            return backend;
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }

    public ModelConfig Config { get; }

    public RoutingFormat RoutingFormat { get; }

    public int BlockSize => _options.BlockSize;

    public int NumBlocks { get; private set; }

    public TensorDType KvDType => TensorDType.BF16;

    public int KvBytesPerBlock { get; }

    /// <summary>The GPU, as the runtime names it (with compute capability, multiprocessors and memory).</summary>
    public string DeviceName { get; }

    /// <summary>Device memory when the KV cache was sized: total, and free before the cache was allocated.</summary>
    public (ulong Total, ulong FreeBeforeKv) DeviceMemory { get; private set; }

    public unsafe void Forward(ForwardBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (batch.TokenCount == 0)
        {
            return;
        }
        Validate(batch);
        var layout = StepPacker.Pack(batch, _staging.AsSpan<byte>(0, checked((int)_staging.Length)), _options.MaxBlocksPerSequence);
        using var staging = new HandleReference(_staging);
        using var logits = new HandleReference(batch.LogitsBuffer);
        using var routing = new HandleReference(batch.RoutingBuffer);
        using var status = new HandleReference(batch.TokenStatusBuffer);
        using var argMax = new HandleReference(batch.ArgMaxBuffer);
        var step = new StepNative
        {
            NumTokens = batch.TokenCount,
            NumSeqs = batch.SequenceCount,
            NumLogitRows = batch.LogitRowCount,
            CaptureRouting = batch.CaptureRouting ? 1 : 0,
            Staging = staging.Address,
            StagingBytes = layout.TotalBytes,
            TokenIds = layout.TokenIds,
            Positions = layout.Positions,
            Slots = layout.Slots,
            TokenSeq = layout.TokenSequence,
            LogitTokens = layout.LogitTokens,
            BlockTables = layout.BlockTables,
            Forced = layout.Forced,
            LogitsOut = logits.Address,
            RoutingOut = routing.Address,
            TokenStatusOut = status.Address,
            ArgMaxOut = argMax.Address,
            ArgMaxLimit = batch.ArgMaxLimit,
            CopyLogits = batch.LogitsWanted ? 1 : 0,
        };
        CudaNative.Check(CudaNative.Forward(_model, &step), "the forward");
        batch.HasArgMax = batch.LogitRowCount > 0;
    }

    /// <summary>
    /// Poisons this process's CUDA context on purpose, as a faulty kernel would; the call throws the
    /// <see cref="DeviceFaultException"/> every later call throws too. For checks of fault handling on a real GPU.
    /// </summary>
    public void InjectDeviceFault() => CudaNative.Check(CudaNative.InjectDeviceFault(_model), "the injected device fault");

    public HostBuffer AllocateHostBuffer(long bytes) => PageLockedHostBuffer.Allocate(bytes);

    /// <summary>
    /// The device's ceilings, measured now over <paramref name="copyBytes"/>: device-to-device copy and read-only
    /// bandwidth, and an n x n x n bf16 cuBLAS GEMM; medians of ten after warm-ups.
    /// </summary>
    public static DeviceCeilings MeasureCeilings(long copyBytes = 4L << 30, int gemmSize = 8192)
    {
        CudaLibrary.EnsureLoaded();
        CudaNative.Check(CudaNative.MeasureCeilings((ulong)copyBytes, gemmSize, out var copy, out var read, out var gemm), "measuring the GPU's ceilings");
        return new DeviceCeilings(copy, read, gemm);
    }

    /// <summary>
    /// False (default): each MoE projection is one grouped GEMM over a tile map built on the device, with no host
    /// synchronization. True: one cuBLAS GEMM per active expert, the call transformers' eager experts make, so the
    /// experts' products match a transformers reference bit for bit; it costs one host synchronization per MoE layer.
    /// </summary>
    public bool PerExpertGemms
    {
        get => _perExpertGemms;
        set
        {
            CudaNative.Check(CudaNative.SetPerExpertGemms(_model, value ? 1 : 0), "switching the expert GEMMs");
            _perExpertGemms = value;
        }
    }

    /// <summary>Replays decode steps from CUDA graphs (on unless <see cref="CudaBackendOptions.CudaGraphs"/> is false).</summary>
    public bool CudaGraphs
    {
        get => _cudaGraphs;
        set
        {
            CudaNative.Check(CudaNative.SetCudaGraphs(_model, value ? 1 : 0), "switching CUDA graphs");
            _cudaGraphs = value;
        }
    }

    /// <summary>Graphs captured so far, steps replayed from one, and steps whose kernels were launched one by one.</summary>
    public (int Graphs, long Replays, long EagerSteps) CudaGraphStats
    {
        get
        {
            CudaNative.Check(CudaNative.CudaGraphStats(_model, out var graphs, out var replays, out var eager), "reading CUDA graph counts");
            return (graphs, replays, eager);
        }
    }

    /// <summary>Turns per-kernel timing (CUDA events around each kernel class) on or off, and clears it.</summary>
    public void SetProfiling(bool enabled) => CudaNative.Check(CudaNative.SetProfiling(_model, enabled ? 1 : 0), "setting up profiling");

    /// <summary>Milliseconds per kernel class since the last call (or since profiling was turned on); resets them.</summary>
    public unsafe IReadOnlyList<(string Name, double Milliseconds)> ReadProfile()
    {
        var count = CudaNative.ProfileClassCount();
        var values = new double[count];
        fixed (double* p = values)
        {
            CudaNative.Check(CudaNative.Profile(_model, p, count), "reading the profile");
        }
        return Enumerable.Range(0, count).Select(i => (Marshal.PtrToStringUTF8(CudaNative.ProfileClassName(i))!, values[i])).ToArray();
    }

    public void Dispose()
    {
        _model.Dispose();
        _staging?.Dispose();
    }

    /// <summary>The checks the kernels rely on: every index a kernel follows is inside the buffer it indexes.</summary>
    private void Validate(ForwardBatch batch)
    {
        if (batch.TokenCount > _options.MaxNumBatchedTokens || batch.SequenceCount > _options.MaxNumSeqs || batch.LogitRowCount > _options.ResolvedMaxLogitRows)
        {
            throw new ArgumentException(
                $"the step ({batch.TokenCount} tokens, {batch.SequenceCount} sequences, {batch.LogitRowCount} logit rows) exceeds the backend's limits " +
                $"({_options.MaxNumBatchedTokens}, {_options.MaxNumSeqs}, {_options.ResolvedMaxLogitRows})", nameof(batch));
        }
        var slots = (long)NumBlocks * BlockSize;
        var tableBlocks = Math.Min(batch.MaxBlocksPerSequence, _options.MaxBlocksPerSequence);
        var lastPosition = _lastPosition.AsSpan(0, batch.SequenceCount);
        lastPosition.Fill(-1);
        for (var t = 0; t < batch.TokenCount; t++)
        {
            if ((uint)batch.TokenIds[t] >= (uint)Config.VocabSize)
            {
                throw new ArgumentOutOfRangeException(nameof(batch), $"token id {batch.TokenIds[t]} is outside the vocabulary of {Config.VocabSize}");
            }
            if ((uint)batch.SlotMapping[t] >= (ulong)slots)
            {
                throw new ArgumentOutOfRangeException(nameof(batch), $"slot {batch.SlotMapping[t]} is outside the KV cache of {slots} slots");
            }
            if ((uint)batch.Positions[t] >= (uint)(tableBlocks * BlockSize))
            {
                throw new ArgumentOutOfRangeException(nameof(batch), $"position {batch.Positions[t]} is beyond the block table");
            }
            var sequence = batch.TokenSequence[t];
            if ((uint)sequence >= (uint)batch.SequenceCount)
            {
                throw new ArgumentOutOfRangeException(nameof(batch), $"token {t} names sequence {sequence} of {batch.SequenceCount}");
            }
            lastPosition[sequence] = Math.Max(lastPosition[sequence], batch.Positions[t]);
        }
        for (var s = 0; s < batch.SequenceCount; s++)
        {
            var table = batch.BlockTable(s);
            for (var b = 0; b <= lastPosition[s] / BlockSize; b++)
            {
                if ((uint)table[b] >= (uint)NumBlocks)
                {
                    throw new ArgumentOutOfRangeException(nameof(batch), $"sequence {s}'s block table names block {table[b]} of {NumBlocks}");
                }
            }
        }
        for (var r = 0; r < batch.LogitRowCount; r++)
        {
            if ((uint)batch.LogitTokens[r] >= (uint)batch.TokenCount)
            {
                throw new ArgumentOutOfRangeException(nameof(batch), $"logit row {r} names token {batch.LogitTokens[r]} of {batch.TokenCount}");
            }
        }
        if (batch.HasForcedRouting)
        {
            var format = RoutingFormat;
            for (var t = 0; t < batch.TokenCount; t++)
            {
                var row = batch.ForcedRouting.AsSpan(t * format.RowBytes, format.RowBytes);
                if (format.IsUnsetRow(row))
                {
                    continue;
                }
                for (var i = 0; i < format.ElementsPerRow; i++)
                {
                    if (format.Get(row, i) >= format.NumExperts)
                    {
                        throw new ArgumentException($"forced routing of token {t} names expert {format.Get(row, i)}, but the model has {format.NumExperts} experts", nameof(batch));
                    }
                }
            }
        }
    }

    private void AllocateKvCache()
    {
        CudaNative.Check(CudaNative.MemoryInfo(out var free, out var total), "reading the GPU's free memory");
        DeviceMemory = (total, free);
        var needed = _options.MaxBlocksPerSequence;
        var blocks = _options.NumBlocks > 0 ? _options.NumBlocks : KvCacheSizing.Blocks(total, free, _options.GpuMemoryUtilization, KvBytesPerBlock);
        if (_options.NumBlocks == 0 && KvCacheSizing.Shortfall(blocks, needed, _options.GpuMemoryUtilization, total, free, KvBytesPerBlock) is { } shortfall)
        {
            throw new ArgumentException(shortfall, "gpu-memory-utilization");
        }
        if ((ulong)blocks * (ulong)KvBytesPerBlock > free)
        {
            throw new ArgumentException(
                $"--num-blocks {blocks} needs {blocks * (double)KvBytesPerBlock / (1 << 30):F2} GiB of KV cache, but only {free / (double)(1 << 30):F2} GiB of GPU memory are free", "num-blocks");
        }
        CudaNative.Check(CudaNative.KvAllocate(_model, blocks), $"allocating a KV cache of {blocks} blocks");
        NumBlocks = blocks;
    }

    private static unsafe string ReadDeviceName()
    {
        var buffer = stackalloc byte[256];
        CudaNative.Check(CudaNative.DeviceName(buffer, 256), "reading the GPU's name");
        return Marshal.PtrToStringUTF8((nint)buffer) ?? "";
    }
}
