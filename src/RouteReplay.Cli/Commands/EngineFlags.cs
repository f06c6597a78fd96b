using System.CommandLine;
using RouteReplay.Engine;
using RouteReplay.Storage;

namespace RouteReplay.Cli.Commands;

/// <summary>The engine flags every running command shares; each maps to one <see cref="EngineOptions"/> field.</summary>
internal sealed class EngineFlags
{
    private static readonly EngineOptions Defaults = new();

    private static readonly Dictionary<string, PreemptionMode> PreemptionModes = new()
    {
        ["auto"] = PreemptionMode.Auto,
        ["swap"] = PreemptionMode.Swap,
        ["recompute"] = PreemptionMode.Recompute,
    };

    private static readonly Dictionary<string, ComputeDevice> Devices = new()
    {
        ["cpu"] = ComputeDevice.Cpu,
        ["cuda"] = ComputeDevice.Cuda,
    };

    private static readonly Dictionary<string, KvStoreWriteMode> KvStoreWriteModes = new()
    {
        ["through"] = KvStoreWriteMode.Through,
        ["evict"] = KvStoreWriteMode.Evict,
    };

    private readonly Option<int> _blockSize = Flags.Int("--block-size", "Tokens per KV-cache block.", Defaults.BlockSize);
    private readonly Option<int> _numBlocks = Flags.Int("--num-blocks", "KV pool size in blocks (0: on the CPU enough for max-num-seqs requests of half the model length; on a GPU what --gpu-memory-utilization leaves).", 0);
    private readonly Option<int> _maxNumSeqs = Flags.Int("--max-num-seqs", "Most sequences in one step.", Defaults.MaxNumSeqs);
    private readonly Option<int> _maxNumBatchedTokens = Flags.Int("--max-num-batched-tokens", "Most tokens (prefill chunks plus decodes) in one step.", Defaults.MaxNumBatchedTokens);
    private readonly Option<int> _maxModelLen = Flags.Int("--max-model-len", "Most tokens (prompt plus output) of a request.", Defaults.MaxModelLen);
    private readonly Option<bool> _noPrefixCaching = new("--no-prefix-caching") { Description = "Turn off prefix caching." };
    private readonly Option<double> _swapSpace = Flags.Double("--swap-space", "Host-memory tier for swapped-out and demoted blocks, in GiB (allocated as used); 0 turns it off.", Defaults.SwapSpaceGiB);
    private readonly Option<string> _preemptionMode = Flags.Choice("--preemption-mode", "auto (swap when the host tier has room, else recompute), swap or recompute.", "auto", PreemptionModes.Keys.ToDictionary(k => k));
    private readonly Option<string?> _kvStore = new("--kv-store") { Description = "Persistent block store shared by processes and restarts: file:DIR or redis://HOST:PORT[,HOST:PORT...] (one server or a Redis Cluster; the port is required)." };
    private readonly Option<double> _kvStoreMaxGiB = Flags.Double("--kv-store-max-gib", "File store size cap in GiB; least recently used values are deleted past it (0: no cap).", Defaults.KvStoreMaxGiB);
    private readonly Option<int> _kvStoreTtl = Flags.Int("--kv-store-ttl-seconds", "Redis values' time to live in seconds (0: no expiry).", Defaults.KvStoreTtlSeconds);
    private readonly Option<KvStoreWriteMode> _kvStoreWrite = Flags.Choice("--kv-store-write", "through (write full blocks as soon as they are committed) or evict (only when evicted from the last memory tier).", Defaults.KvStoreWrite, KvStoreWriteModes);
    private readonly Option<int> _kvStoreTimeout = Flags.Int("--kv-store-timeout-ms", "Longest one store read or write may take; slower counts as a fault and a miss.", Defaults.KvStoreTimeoutMs);
    private readonly Option<int> _kvStoreRetryMax = Flags.Int("--kv-store-retry-max-ms", "Longest wait between background probes of a store node that is down (waits double from 1 s up to it).", Defaults.KvStoreRetryMaxMs);
    private readonly Option<int> _kvStoreQueue = Flags.Int("--kv-store-queue-size", "Store writes queued at most; more are dropped and counted (steps never wait for the store).", Defaults.KvStoreQueueSize);
    private readonly Option<string?> _weightsVersion = new("--weights-version") { Description = "Identify the weights in cache keys by this string instead of hashing the weight files." };
    private readonly Option<ComputeDevice> _device = Flags.Choice("--device", "Where the forward runs: cpu (fp32) or cuda (bf16 on an NVIDIA GPU).", Defaults.Device, Devices);
    private readonly Option<double> _gpuMemoryUtilization = Flags.Double("--gpu-memory-utilization", "With --device cuda: the fraction of GPU memory to use (weights, buffers, KV cache); the KV cache gets the rest unless --num-blocks is set.", Defaults.GpuMemoryUtilization);

    private readonly Option<bool> _enforceEager = new("--enforce-eager") { Description = "With --device cuda: launch every kernel of every step instead of replaying decode steps from CUDA graphs (same results, slower decode)." };

    public void AddTo(Command command)
    {
        command.Options.Add(_blockSize);
        command.Options.Add(_numBlocks);
        command.Options.Add(_maxNumSeqs);
        command.Options.Add(_maxNumBatchedTokens);
        command.Options.Add(_maxModelLen);
        command.Options.Add(_noPrefixCaching);
        command.Options.Add(_swapSpace);
        command.Options.Add(_preemptionMode);
        command.Options.Add(_weightsVersion);
        command.Options.Add(_device);
        command.Options.Add(_gpuMemoryUtilization);
        command.Options.Add(_enforceEager);
        command.Options.Add(_kvStore);
        command.Options.Add(_kvStoreMaxGiB);
        command.Options.Add(_kvStoreTtl);
        command.Options.Add(_kvStoreWrite);
        command.Options.Add(_kvStoreTimeout);
        command.Options.Add(_kvStoreRetryMax);
        command.Options.Add(_kvStoreQueue);
    }

    /// <summary>The flags that only set up the block store <c>--kv-store</c> names.</summary>
    private Option[] StoreSettings => [_kvStoreMaxGiB, _kvStoreTtl, _kvStoreWrite, _kvStoreTimeout, _kvStoreRetryMax, _kvStoreQueue];

    /// <summary>Reads and checks the flags; a file store's folder is created and checked for writing, all before any model loads.</summary>
    /// <exception cref="ArgumentException">A bad value or combination, naming the flag.</exception>
    public EngineOptions Read(ParseResult parse)
    {
        var options = ReadValues(parse);
        if (options.KvStore is null)
        {
            if (StoreSettings.FirstOrDefault(option => Flags.IsGiven(parse, option)) is { } orphan)
            {
                throw new ArgumentException($"{orphan.Name} needs --kv-store: it sets up the block store, and none is named", orphan.Name.TrimStart('-'));
            }
        }
        else if (BlockStoreSpec.Parse(options.KvStore) is FileStoreSpec file)
        {
            OutputPaths.CheckFolder(file.Directory, "--kv-store");
        }
        return options;
    }

    private EngineOptions ReadValues(ParseResult parse) => new EngineOptions
    {
        BlockSize = parse.GetValue(_blockSize),
        NumBlocks = parse.GetValue(_numBlocks),
        MaxNumSeqs = parse.GetValue(_maxNumSeqs),
        MaxNumBatchedTokens = parse.GetValue(_maxNumBatchedTokens),
        MaxModelLen = parse.GetValue(_maxModelLen),
        EnablePrefixCaching = !parse.GetValue(_noPrefixCaching),
        SwapSpaceGiB = parse.GetValue(_swapSpace),
        PreemptionMode = PreemptionModes[parse.GetValue(_preemptionMode)!],
        WeightsVersion = parse.GetValue(_weightsVersion),
        Device = parse.GetValue(_device),
        GpuMemoryUtilization = parse.GetValue(_gpuMemoryUtilization),
        EnforceEager = parse.GetValue(_enforceEager),
        KvStore = parse.GetValue(_kvStore),
        KvStoreMaxGiB = parse.GetValue(_kvStoreMaxGiB),
        KvStoreTtlSeconds = parse.GetValue(_kvStoreTtl),
        KvStoreWrite = parse.GetValue(_kvStoreWrite),
        KvStoreTimeoutMs = parse.GetValue(_kvStoreTimeout),
        KvStoreRetryMaxMs = parse.GetValue(_kvStoreRetryMax),
        KvStoreQueueSize = parse.GetValue(_kvStoreQueue),
    }.Validate();
}
