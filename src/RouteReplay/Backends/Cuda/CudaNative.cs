using System.Runtime.InteropServices;

namespace RouteReplay.Backends.Cuda;

/// <summary>The C ABI of <c>native/include/routereplay_cuda.h</c>. Call <see cref="CudaLibrary.EnsureLoaded"/> first.</summary>
internal static unsafe partial class CudaNative
{
    public const string LibraryName = "routereplay_cuda";

    /// <summary>RR_ABI_VERSION of the header these declarations mirror.</summary>
    public const int ExpectedAbiVersion = 4;

    public const int Ok = 0;

    /// <summary>RR_DEVICE_FAULT: the CUDA context is poisoned; every later call fails the same way.</summary>
    public const int DeviceFault = 2;

    [LibraryImport(LibraryName, EntryPoint = "rr_abi_version")]
    public static partial int AbiVersion();

    [LibraryImport(LibraryName, EntryPoint = "rr_last_error")]
    public static partial nint LastError();

    [LibraryImport(LibraryName, EntryPoint = "rr_device_count")]
    public static partial int DeviceCount(out int count);

    [LibraryImport(LibraryName, EntryPoint = "rr_device_name")]
    public static partial int DeviceName(byte* name, int capacity);

    [LibraryImport(LibraryName, EntryPoint = "rr_memory_info")]
    public static partial int MemoryInfo(out ulong freeBytes, out ulong totalBytes);

    [LibraryImport(LibraryName, EntryPoint = "rr_model_create")]
    public static partial int ModelCreate(ModelConfigNative* config, out nint model);

    [LibraryImport(LibraryName, EntryPoint = "rr_model_destroy")]
    public static partial void ModelDestroy(nint model);

    [LibraryImport(LibraryName, EntryPoint = "rr_tensor")]
    public static partial int Tensor(CudaModelHandle model, int kind, int layer, out nint device, out ulong bytes);

    [LibraryImport(LibraryName, EntryPoint = "rr_upload")]
    public static partial int Upload(CudaModelHandle model, nint device, void* host, ulong bytes);

    [LibraryImport(LibraryName, EntryPoint = "rr_copy_from_ipc")]
    public static partial int CopyFromIpc(CudaModelHandle model, byte* handles, int numHandles, int* handleIndex, ulong* sourceOffsets, nint* destinations, ulong* bytes, int count);

    [LibraryImport(LibraryName, EntryPoint = "rr_fill_normal")]
    public static partial int FillNormal(CudaModelHandle model, nint device, ulong count, ulong seed, float mean, float std);

    [LibraryImport(LibraryName, EntryPoint = "rr_kv_bytes_per_block")]
    public static partial ulong KvBytesPerBlock(CudaModelHandle model);

    [LibraryImport(LibraryName, EntryPoint = "rr_kv_allocate")]
    public static partial int KvAllocate(CudaModelHandle model, int numBlocks);

    [LibraryImport(LibraryName, EntryPoint = "rr_kv_release")]
    public static partial int KvRelease(CudaModelHandle model);

    [LibraryImport(LibraryName, EntryPoint = "rr_weights_release")]
    public static partial int WeightsRelease(CudaModelHandle model, int keepHostCopy);

    [LibraryImport(LibraryName, EntryPoint = "rr_weights_restore")]
    public static partial int WeightsRestore(CudaModelHandle model, int copyBack);

    [LibraryImport(LibraryName, EntryPoint = "rr_forward")]
    public static partial int Forward(CudaModelHandle model, StepNative* step);

    [LibraryImport(LibraryName, EntryPoint = "rr_set_per_expert_gemms")]
    public static partial int SetPerExpertGemms(CudaModelHandle model, int enabled);

    [LibraryImport(LibraryName, EntryPoint = "rr_set_cuda_graphs")]
    public static partial int SetCudaGraphs(CudaModelHandle model, int enabled);

    [LibraryImport(LibraryName, EntryPoint = "rr_cuda_graph_stats")]
    public static partial int CudaGraphStats(CudaModelHandle model, out int graphs, out long replays, out long eagerSteps);

    [LibraryImport(LibraryName, EntryPoint = "rr_copy_blocks_to_host")]
    public static partial int CopyBlocksToHost(CudaModelHandle model, int* blocks, nint* host, int count);

    [LibraryImport(LibraryName, EntryPoint = "rr_copy_blocks_to_device")]
    public static partial int CopyBlocksToDevice(CudaModelHandle model, nint* host, int* blocks, int count);

    [LibraryImport(LibraryName, EntryPoint = "rr_read_block")]
    public static partial int ReadBlock(CudaModelHandle model, int block, void* host);

    [LibraryImport(LibraryName, EntryPoint = "rr_write_block")]
    public static partial int WriteBlock(CudaModelHandle model, int block, void* host);

    [LibraryImport(LibraryName, EntryPoint = "rr_synchronize")]
    public static partial int Synchronize(CudaModelHandle model);

    [LibraryImport(LibraryName, EntryPoint = "rr_host_alloc")]
    public static partial int HostAlloc(ulong bytes, out nint host);

    [LibraryImport(LibraryName, EntryPoint = "rr_host_free")]
    public static partial void HostFree(nint host);

    [LibraryImport(LibraryName, EntryPoint = "rr_set_profiling")]
    public static partial int SetProfiling(CudaModelHandle model, int enabled);

    [LibraryImport(LibraryName, EntryPoint = "rr_profile_class_count")]
    public static partial int ProfileClassCount();

    [LibraryImport(LibraryName, EntryPoint = "rr_profile_class_name")]
    public static partial nint ProfileClassName(int index);

    [LibraryImport(LibraryName, EntryPoint = "rr_profile")]
    public static partial int Profile(CudaModelHandle model, double* milliseconds, int capacity);

    [LibraryImport(LibraryName, EntryPoint = "rr_inject_device_fault")]
    public static partial int InjectDeviceFault(CudaModelHandle model);

    [LibraryImport(LibraryName, EntryPoint = "rr_measure_ceilings")]
    public static partial int MeasureCeilings(ulong copyBytes, int gemmN, out double copyGbps, out double readGbps, out double gemmTflops);

    /// <summary>
    /// Throws when <paramref name="status"/> is not OK: a <see cref="DeviceFaultException"/> when the GPU context is
    /// poisoned, else a <see cref="CudaException"/>; both carry the library's message.
    /// </summary>
    public static void Check(int status, string operation)
    {
        if (status == Ok)
        {
            return;
        }
        var message = $"{operation} failed on the GPU: {Marshal.PtrToStringUTF8(LastError())}";
        throw status == DeviceFault ? new DeviceFaultException(message) : new CudaException(message);
    }
}

/// <summary>rr_tensor_kind.</summary>
internal enum DeviceTensorKind
{
    Embed = 0,
    FinalNorm = 1,
    LmHead = 2,
    InputNorm = 3,
    PostNorm = 4,
    Q = 5,
    K = 6,
    V = 7,
    O = 8,
    QNorm = 9,
    KNorm = 10,
    Router = 11,
    GateUp = 12,
    Down = 13,
    MlpGate = 14,
    MlpUp = 15,
    MlpDown = 16,
}

/// <summary>rr_model_config.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct ModelConfigNative
{
    public int HiddenSize;
    public int NumLayers;
    public int NumHeads;
    public int NumKvHeads;
    public int HeadDim;
    public int VocabSize;
    public int IntermediateSize;
    public int MoeIntermediateSize;
    public int NumExperts;
    public int TopK;
    public int NormTopkProb;
    public int TieWordEmbeddings;
    public float RmsNormEps;
    public float RopeAttentionScaling;
    public float* RopeInvFreq;
    public byte* LayerIsMoe;
    public int BlockSize;
    public int MaxTokens;
    public int MaxSeqs;
    public int MaxBlocksPerSeq;
    public int MaxLogitRows;
    public int MaxModelLen;
    public int RoutingElementBytes;
}

/// <summary>rr_step.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct StepNative
{
    public int NumTokens;
    public int NumSeqs;
    public int NumLogitRows;
    public int CaptureRouting;
    public nint Staging;
    public long StagingBytes;
    public long TokenIds;
    public long Positions;
    public long Slots;
    public long TokenSeq;
    public long LogitTokens;
    public long BlockTables;
    public long Forced;
    public nint LogitsOut;
    public nint RoutingOut;
    public nint TokenStatusOut;
    public nint ArgMaxOut;
    public int ArgMaxLimit;
    public int CopyLogits;
}
