using System.CommandLine;
using RouteReplay.Engine;

namespace RouteReplay.Cli.Commands;

/// <summary>The engine flags every running command shares; each maps to one <see cref="EngineOptions"/> field.</summary>
internal sealed class EngineFlags
{
    private static readonly EngineOptions Defaults = new();

    private readonly Option<int> _blockSize = new("--block-size") { Description = "Tokens per KV-cache block.", DefaultValueFactory = _ => Defaults.BlockSize };
    private readonly Option<int> _numBlocks = new("--num-blocks") { Description = "KV pool size in blocks (0: on the CPU enough for max-num-seqs requests of half the model length; on a GPU what --gpu-memory-utilization leaves).", DefaultValueFactory = _ => 0 };
    private readonly Option<int> _maxNumSeqs = new("--max-num-seqs") { Description = "Most sequences in one step.", DefaultValueFactory = _ => Defaults.MaxNumSeqs };
    private readonly Option<int> _maxNumBatchedTokens = new("--max-num-batched-tokens") { Description = "Most tokens (prefill chunks plus decodes) in one step.", DefaultValueFactory = _ => Defaults.MaxNumBatchedTokens };
    private readonly Option<int> _maxModelLen = new("--max-model-len") { Description = "Most tokens (prompt plus output) of a request.", DefaultValueFactory = _ => Defaults.MaxModelLen };
    private readonly Option<bool> _noPrefixCaching = new("--no-prefix-caching") { Description = "Turn off prefix caching." };
    private readonly Option<double> _swapSpace = new("--swap-space") { Description = "Host-memory tier for swapped-out and demoted blocks, in GiB (allocated as used); 0 turns it off.", DefaultValueFactory = _ => Defaults.SwapSpaceGiB };
    private readonly Option<PreemptionMode> _preemptionMode = new("--preemption-mode") { Description = "auto (swap when the host tier has room, else recompute), swap or recompute.", DefaultValueFactory = _ => Defaults.PreemptionMode };
    private readonly Option<string?> _weightsVersion = new("--weights-version") { Description = "Identify the weights in cache keys by this string instead of hashing the weight files." };
    private readonly Option<ComputeDevice> _device = new("--device") { Description = "Where the forward runs: cpu (fp32) or cuda (bf16 on an NVIDIA GPU).", DefaultValueFactory = _ => Defaults.Device };
    private readonly Option<double> _gpuMemoryUtilization = new("--gpu-memory-utilization") { Description = "With --device cuda: the fraction of GPU memory to use (weights, buffers, KV cache); the KV cache gets the rest unless --num-blocks is set.", DefaultValueFactory = _ => Defaults.GpuMemoryUtilization };

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
        Device = parse.GetValue(_device),
        GpuMemoryUtilization = parse.GetValue(_gpuMemoryUtilization),
    }.Validate();
}
