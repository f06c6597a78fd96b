using System.CommandLine;
using RouteReplay.Engine;

namespace RouteReplay.Cli.Commands;

/// <summary>The engine flags every running command shares; each maps to one <see cref="EngineOptions"/> field.</summary>
internal sealed class EngineFlags
{
    private static readonly EngineOptions Defaults = new();

    private readonly Option<int> _blockSize = new("--block-size") { Description = "Tokens per KV-cache block.", DefaultValueFactory = _ => Defaults.BlockSize };
    private readonly Option<int> _numBlocks = new("--num-blocks") { Description = "KV pool size in blocks (0: enough for max-num-seqs requests of half the model length).", DefaultValueFactory = _ => 0 };
    private readonly Option<int> _maxNumSeqs = new("--max-num-seqs") { Description = "Most sequences in one step.", DefaultValueFactory = _ => Defaults.MaxNumSeqs };
    private readonly Option<int> _maxNumBatchedTokens = new("--max-num-batched-tokens") { Description = "Most tokens (prefill chunks plus decodes) in one step.", DefaultValueFactory = _ => Defaults.MaxNumBatchedTokens };
    private readonly Option<int> _maxModelLen = new("--max-model-len") { Description = "Most tokens (prompt plus output) of a request.", DefaultValueFactory = _ => Defaults.MaxModelLen };
    private readonly Option<bool> _noPrefixCaching = new("--no-prefix-caching") { Description = "Turn off prefix caching." };
    private readonly Option<double> _swapSpace = new("--swap-space") { Description = "Host-memory tier for swapped-out and demoted blocks, in GiB (allocated as used); 0 turns it off.", DefaultValueFactory = _ => Defaults.SwapSpaceGiB };
    private readonly Option<PreemptionMode> _preemptionMode = new("--preemption-mode") { Description = "auto (swap when the host tier has room, else recompute), swap or recompute.", DefaultValueFactory = _ => Defaults.PreemptionMode };
    private readonly Option<string?> _kvStore = new("--kv-store") { Description = "Persistent block store shared by processes and restarts: file:DIR or redis://HOST:PORT[,HOST:PORT...] (one server or a Redis Cluster)." };
    private readonly Option<double> _kvStoreMaxGiB = new("--kv-store-max-gib") { Description = "File store size cap in GiB; least recently used values are deleted past it (0: no cap).", DefaultValueFactory = _ => Defaults.KvStoreMaxGiB };
    private readonly Option<int> _kvStoreTtl = new("--kv-store-ttl-seconds") { Description = "Redis values' time to live in seconds (0: no expiry).", DefaultValueFactory = _ => Defaults.KvStoreTtlSeconds };
    private readonly Option<KvStoreWriteMode> _kvStoreWrite = new("--kv-store-write") { Description = "through (write full blocks as soon as they are committed) or evict (only when evicted from the last memory tier).", DefaultValueFactory = _ => Defaults.KvStoreWrite };
    private readonly Option<int> _kvStoreTimeout = new("--kv-store-timeout-ms") { Description = "Longest one store read or write may take; slower counts as a fault and a miss.", DefaultValueFactory = _ => Defaults.KvStoreTimeoutMs };
    private readonly Option<int> _kvStoreQueue = new("--kv-store-queue-size") { Description = "Store writes queued at most; more are dropped and counted (steps never wait for the store).", DefaultValueFactory = _ => Defaults.KvStoreQueueSize };
    private readonly Option<string?> _weightsVersion = new("--weights-version") { Description = "Identify the weights in cache keys by this string instead of hashing the weight files." };

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
        command.Options.Add(_kvStore);
        command.Options.Add(_kvStoreMaxGiB);
        command.Options.Add(_kvStoreTtl);
        command.Options.Add(_kvStoreWrite);
        command.Options.Add(_kvStoreTimeout);
        command.Options.Add(_kvStoreQueue);
    }

    public EngineOptions Read(ParseResult parse) => new EngineOptions
    {
        BlockSize = parse.GetValue(_blockSize),
        NumBlocks = parse.GetValue(_numBlocks),
        MaxNumSeqs = parse.GetValue(_maxNumSeqs),
        MaxNumBatchedTokens = parse.GetValue(_maxNumBatchedTokens),
        MaxModelLen = parse.GetValue(_maxModelLen),
        EnablePrefixCaching = !parse.GetValue(_noPrefixCaching),
        SwapSpaceGiB = parse.GetValue(_swapSpace),
        PreemptionMode = parse.GetValue(_preemptionMode),
        WeightsVersion = parse.GetValue(_weightsVersion),
        KvStore = parse.GetValue(_kvStore),
        KvStoreMaxGiB = parse.GetValue(_kvStoreMaxGiB),
        KvStoreTtlSeconds = parse.GetValue(_kvStoreTtl),
        KvStoreWrite = parse.GetValue(_kvStoreWrite),
        KvStoreTimeoutMs = parse.GetValue(_kvStoreTimeout),
        KvStoreQueueSize = parse.GetValue(_kvStoreQueue),
    }.Validate();
}
