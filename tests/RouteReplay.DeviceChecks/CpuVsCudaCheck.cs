using RouteReplay.Backends;
using RouteReplay.Backends.Cpu;
using RouteReplay.Backends.Cuda;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.DeviceChecks;

/// <summary>
/// The CUDA backend (bf16) against the CPU backend (fp32) on a preset checkpoint, every prompt alone, logits at
/// every position: the top-5 logits (by the CPU's ranking) agree within <see cref="LogitTolerance"/> of the row's
/// scale, and every routing decision is the same unless the CPU's k-th and (k+1)-th router logits are within
/// <see cref="RouterTieTolerance"/> (a near-tie), which are counted. All prompts are then run again as one batch on
/// the GPU, and how much that changes is reported: the GPU's batch variance, measured.
/// </summary>
/// <remarks>
/// Tolerances. bf16 keeps 8 significant bits: each rounding moves a value by at most 2^-9 (0.2%) of itself. The
/// CUDA forward rounds activations to bf16 at about 15 points per layer, as transformers' bf16 forward does; those
/// errors add up like a random walk, about sqrt(15 L) * 0.2%: 1.5% of a logit's scale for tiny (4 layers), 2.2% for
/// small (8). The tolerance, 4% of max(1, |top logit|), is about twice that; a wrong kernel (a norm, an angle, an
/// expert, a gate weight) moves logits by tens of percent. A router logit (scale about 1 to 3 in the presets) moves
/// by the same relative amount, a few hundredths: two experts whose fp32 router logits are within 0.1 may swap.
/// </remarks>
public static class CpuVsCudaCheck
{
    public const double LogitTolerance = 0.04;
    public const double RouterTieTolerance = 0.1;

    private static readonly string[] Prompts =
    [
        "The capital of France is",
        "Hello, world! The capital of France is Paris.",
        "In a mixture-of-experts model, a router picks the top-k experts for every token, and the engine must remember which.",
        "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
        "RL rollouts need the exact routing the sampler saw.",
        "一个混合专家模型为每个词元选择专家。",
        "Once upon a time, in a land of paged key-value caches, every block carried its routing rows wherever it went: to the host tier, to storage, and back again, never once forgetting which experts had been chosen.",
        "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
        "Q: What is a near-tie? A:",
        "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog.",
        "<|im_start|>user\nSummarize routing replay in one sentence.<|im_end|>\n<|im_start|>assistant\n",
        "x",
    ];

    public static CheckResult Run(string preset, string workDirectory)
    {
        var dir = Path.Combine(workDirectory, $"preset-{preset}");
        ModelMaker.Make(ModelPresets.Get(preset), dir);
        using var checkpoint = Checkpoint.Open(dir);
        var tokenizer = TextTokenizer.Load(dir);
        var prompts = Prompts.Select(p => tokenizer.Encode(p).ToArray()).ToArray();
        var longest = prompts.Max(p => p.Length);
        var total = prompts.Sum(p => p.Length);
        const int blockSize = 16;
        var blocksPerPrompt = (longest + blockSize - 1) / blockSize;
        var numBlocks = prompts.Sum(p => (p.Length + blockSize - 1) / blockSize) + blocksPerPrompt;
        using var cpu = CpuBackend.Load(checkpoint, numBlocks, blockSize);
        using var cuda = CudaBackend.Load(checkpoint, new CudaBackendOptions(blockSize, total, prompts.Length, blocksPerPrompt * blockSize * 2, numBlocks, MaxLogitRows: total));
        var format = cuda.RoutingFormat;
        var k = format.TopK;

        var probabilities = new Dictionary<(int Token, int Layer), float[]>();
        cpu.RouterObserver = (layer, token, p) => probabilities[(token, layer)] = p;

        double worstLogit = 0, worstRelative = 0;
        long decisions = 0, nearTies = 0, differing = 0, differingNotTie = 0, top1Differ = 0, top1DifferNotTie = 0;
        double worstDifferingGap = 0;
        var aloneRouting = new List<byte[]>();
        var aloneLogits = new List<float[]>();
        for (var i = 0; i < prompts.Length; i++)
        {
            var ids = prompts[i];
            probabilities.Clear();
            using var cpuBatch = SinglePrompt(cpu, ids, blocksPerPrompt);
            cpu.Forward(cpuBatch);
            using var cudaBatch = SinglePrompt(cuda, ids, blocksPerPrompt);
            cuda.Forward(cudaBatch);
            for (var p = 0; p < ids.Length; p++)
            {
                var expected = cpuBatch.LogitRow(p);
                var got = cudaBatch.LogitRow(p);
                var top = Numerics.TopIndices(expected, 5);
                var scale = Math.Max(1, Math.Abs(expected[top[0]]));
                foreach (var id in top)
                {
                    var diff = Math.Abs(got[id] - expected[id]);
                    worstLogit = Math.Max(worstLogit, diff);
                    worstRelative = Math.Max(worstRelative, diff / scale);
                }
                if (Numerics.TopIndices(got, 1)[0] != top[0])
                {
                    top1Differ++;
                    top1DifferNotTie += expected[top[0]] - expected[top[1]] > LogitTolerance * scale ? 1 : 0;
                }
                aloneLogits.Add(got.ToArray());
                aloneRouting.Add(cudaBatch.RoutingRow(p).ToArray());
                for (var m = 0; m < format.MoeLayerCount; m++)
                {
                    decisions++;
                    var probs = probabilities[(p, m)];
                    var order = Numerics.TopIndices(probs, k + 1);
                    var gap = Math.Log(probs[order[k - 1]]) - Math.Log(probs[order[k]]);
                    var tie = gap < RouterTieTolerance;
                    nearTies += tie ? 1 : 0;
                    var ours = Numerics.Experts(format, cudaBatch.RoutingRow(p), m);
                    var cpuSet = Numerics.Experts(format, cpuBatch.RoutingRow(p), m);
                    if (!ours.SetEquals(cpuSet))
                    {
                        differing++;
                        differingNotTie += tie ? 0 : 1;
                        worstDifferingGap = Math.Max(worstDifferingGap, gap);
                    }
                }
            }
        }

        // Every prompt in one batch on the GPU: what sharing a batch changes (cuBLAS picks kernels by shape).
        using var batch = new ForwardBatch(total, prompts.Length, blocksPerPrompt, format, cuda.Config.VocabSize, total, cuda.AllocateHostBuffer);
        var nextBlock = 0;
        foreach (var ids in prompts)
        {
            var blocks = Enumerable.Range(nextBlock, (ids.Length + blockSize - 1) / blockSize).ToArray();
            nextBlock += blocks.Length;
            var s = batch.AddSequence(blocks);
            for (var p = 0; p < ids.Length; p++)
            {
                batch.AddToken(s, ids[p], p, (blocks[p / blockSize] * blockSize) + (p % blockSize), needsLogits: true);
            }
        }
        cuda.Forward(batch);
        long sameRows = 0;
        double batchedWorstLogit = 0;
        for (var t = 0; t < total; t++)
        {
            sameRows += batch.RoutingRow(t).SequenceEqual(aloneRouting[t]) ? 1 : 0;
            var got = batch.LogitRow(t);
            var alone = aloneLogits[t];
            for (var v = 0; v < alone.Length; v++)
            {
                batchedWorstLogit = Math.Max(batchedWorstLogit, Math.Abs(got[v] - alone[v]));
            }
        }

        var passed = worstRelative <= LogitTolerance && differingNotTie == 0 && top1DifferNotTie == 0;
        var summary = $"{preset}: {prompts.Length} prompts, {total} positions; top-5 logits worst |diff| {worstLogit:F4} ({worstRelative:P2} of scale, tolerance {LogitTolerance:P0}); " +
            $"top-1 differs at {top1Differ} positions ({top1DifferNotTie} beyond a near-tie); routing {decisions} decisions, {differing} differ ({differingNotTie} not near-ties, " +
            $"worst differing gap {worstDifferingGap:F3}), {nearTies} near-ties (gap < {RouterTieTolerance}); one batch vs alone: {sameRows}/{total} routing rows identical, worst logit change {batchedWorstLogit:F4}";
        return new CheckResult($"cpu-vs-cuda-{preset}", passed, summary, w =>
        {
            w.WriteNumber("prompts", prompts.Length);
            w.WriteNumber("positions", total);
            w.WriteNumber("top5_worst_abs_diff", worstLogit);
            w.WriteNumber("top5_worst_relative_diff", worstRelative);
            w.WriteNumber("logit_tolerance_relative", LogitTolerance);
            w.WriteNumber("top1_differ", top1Differ);
            w.WriteNumber("top1_differ_beyond_near_tie", top1DifferNotTie);
            w.WriteNumber("routing_decisions", decisions);
            w.WriteNumber("routing_differ", differing);
            w.WriteNumber("routing_differ_not_near_tie", differingNotTie);
            w.WriteNumber("routing_worst_differing_gap", worstDifferingGap);
            w.WriteNumber("near_ties", nearTies);
            w.WriteNumber("router_tie_tolerance", RouterTieTolerance);
            w.WriteNumber("batched_rows_identical", sameRows);
            w.WriteNumber("batched_worst_logit_change", batchedWorstLogit);
        });
    }

    private static ForwardBatch SinglePrompt(IModelBackend backend, int[] ids, int blocks)
    {
        var batch = new ForwardBatch(ids.Length, 1, blocks, backend.RoutingFormat, backend.Config.VocabSize, ids.Length, backend.AllocateHostBuffer);
        var s = batch.AddSequence(Enumerable.Range(0, blocks).ToArray());
        for (var p = 0; p < ids.Length; p++)
        {
            batch.AddToken(s, ids[p], p, p, needsLogits: true);
        }
        return batch;
    }
}
