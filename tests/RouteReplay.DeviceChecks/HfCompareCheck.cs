using System.Text.Json;
using RouteReplay.Backends;
using RouteReplay.Backends.Cuda;
using RouteReplay.Engine;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.DeviceChecks;

/// <summary>
/// The CUDA backend against Hugging Face transformers (bf16, eager attention and experts) on a checkpoint that
/// transformers wrote, from scripts/hf_cuda_reference.py's output. Each prompt runs alone through the engine, greedy,
/// as transformers' greedy loop does (one prefill, then one token per step): the generated tokens must equal the
/// reference's for at least <see cref="RequiredGreedyTokens"/> tokens, and per (token, MoE layer) the experts must be
/// the same for at least <see cref="RequiredAgreement"/> of the decisions up to the first differing token, with every
/// disagreement a near-tie: the reference's k-th and (k+1)-th router logits (bf16) at most
/// <see cref="TieSteps"/> bf16 steps apart. The prompts' top-5 logits are compared too (reported).
/// </summary>
public static class HfCompareCheck
{
    public const int RequiredGreedyTokens = 32;
    public const double RequiredAgreement = 0.999;
    public const double TieSteps = 2;

    public static CheckResult Run(string modelDirectory, string referencePath)
    {
        using var reference = JsonDocument.Parse(File.ReadAllText(referencePath));
        var root = reference.RootElement;
        var cases = root.GetProperty("cases").EnumerateArray().ToArray();
        var transformersVersion = root.TryGetProperty("transformers", out var version) ? version.GetString() : null;
        var attention = root.TryGetProperty("attn_implementation", out var implementation) ? implementation.GetString() : null;
        var expertsImplementation = root.TryGetProperty("config_experts_implementation", out var expertsValue) ? expertsValue.GetString() : null;
        var k = root.GetProperty("top_k").GetInt32();
        var generatedCount = cases.Min(c => c.GetProperty("generated").GetArrayLength());
        var longest = cases.Max(c => c.GetProperty("prompt_ids").GetArrayLength()) + generatedCount + 1;

        var options = new EngineOptions
        {
            Device = ComputeDevice.Cuda,
            MaxNumSeqs = 1,
            MaxNumBatchedTokens = Math.Max(1024, longest),
            MaxModelLen = Math.Max(512, longest + 16),
            GpuMemoryUtilization = 0.45,
            EnablePrefixCaching = false,
            WeightsVersion = "hf-compare",
        };
        using var engine = LoadedModel.Load(modelDirectory, options);
        var cuda = (CudaBackend)engine.Backend;
        var grouped = Compare(engine, cases, k);
        cuda.PerExpertGemms = true;
        var perExpert = Compare(engine, cases, k);

        var (worstTop5, top1Differ, positions) = ComparePromptLogits(modelDirectory, cases);
        var passed = perExpert.Agreement >= RequiredAgreement && perExpert.DisagreeingNotTies == 0
            && perExpert.GreedyMatches.All(n => n >= Math.Min(RequiredGreedyTokens, generatedCount)) && perExpert.Decisions > 0;
        var summary = $"{cases.Length} prompts, {generatedCount} greedy tokens each; per-expert cuBLAS GEMMs (transformers' calls): {perExpert.Describe()}; " +
            $"grouped expert GEMMs (the default): {grouped.Describe()}; prompt top-5 logits worst |diff| {worstTop5:F4}, top-1 differs at {top1Differ}/{positions} positions " +
            $"(required: {RequiredGreedyTokens} equal tokens per prompt, {RequiredAgreement:P1} agreement, every disagreement within {TieSteps} bf16 steps)";
        return new CheckResult("hf-compare", passed, summary, w =>
        {
            w.WriteString("transformers", transformersVersion);
            w.WriteString("attn_implementation", attention);
            w.WriteString("experts_implementation", expertsImplementation);
            w.WriteNumber("prompts", cases.Length);
            w.WriteNumber("generated_per_prompt", generatedCount);
            w.WriteStartObject("per_expert_gemms");
            perExpert.Write(w);
            w.WriteEndObject();
            w.WriteStartObject("grouped_gemms");
            grouped.Write(w);
            w.WriteEndObject();
            w.WriteNumber("prompt_top5_worst_abs_diff", worstTop5);
            w.WriteNumber("prompt_top1_differ", top1Differ);
            w.WriteNumber("prompt_positions", positions);
        });
    }

    /// <summary>Every prompt alone through the engine, greedy, against the reference's tokens and routing.</summary>
    private static Comparison Compare(LlmEngine engine, JsonElement[] cases, int k)
    {
        var format = engine.RoutingFormat;
        var c = new Comparison(format.MoeLayerCount);
        foreach (var item in cases)
        {
            var prompt = item.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var expected = item.GetProperty("generated").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var sink = new Collector();
            engine.AddRequest(new EngineRequest
            {
                RequestId = $"hf-{Guid.NewGuid():N}",
                PromptTokenIds = prompt,
                Sampling = new SamplingParams { Temperature = 0f, MaxTokens = expected.Length, IgnoreEos = true },
            }, sink);
            engine.RunToCompletion();
            var result = sink.Result!;
            if (result.Error is not null)
            {
                throw new InvalidOperationException($"the reference prompt failed: {result.Error.Message}");
            }
            var tokens = result.Choices[0].TokenIds;
            var same = 0;
            while (same < expected.Length && same < tokens.Count && tokens[same] == expected[same])
            {
                same++;
            }
            c.GreedyMatches.Add(same);
            if (same < expected.Length && item.TryGetProperty("greedy_top2_gap", out var gaps))
            {
                c.DivergenceGaps.Add(gaps[same].GetDouble());
            }
            // Rows of positions whose context both sides share: the prompt and the tokens before the first difference.
            var rows = result.Choices[0].Routing!;
            var comparable = Math.Min(prompt.Length + same, rows.RowCount);
            var router = item.GetProperty("router").EnumerateArray().ToArray();
            for (var m = 0; m < router.Length; m++)
            {
                var experts = router[m].GetProperty("experts");
                var logits = router[m].GetProperty("logits");
                for (var p = 0; p < comparable; p++)
                {
                    c.Decisions++;
                    c.LayerDecisions[m]++;
                    var refExperts = experts[p].EnumerateArray().Select(e => e.GetInt32()).ToArray();
                    var refLogits = logits[p].EnumerateArray().Select(e => e.GetDouble()).ToArray();
                    var ours = Numerics.Experts(format, rows.Data.AsSpan(p * format.RowBytes, format.RowBytes), m);
                    if (ours.SetEquals(refExperts.Take(k)))
                    {
                        c.Agreeing++;
                        c.LayerAgreeing[m]++;
                        continue;
                    }
                    var steps = Math.Abs(refLogits[k - 1] - refLogits[k]) / Numerics.Bf16Step(refLogits[k - 1]);
                    c.WorstDisagreementSteps = Math.Max(c.WorstDisagreementSteps, steps);
                    if (steps <= TieSteps)
                    {
                        c.DisagreeingTies++;
                    }
                    else
                    {
                        c.DisagreeingNotTies++;
                    }
                }
            }
        }
        return c;
    }

    private sealed class Comparison(int moeLayers)
    {
        public long Decisions { get; set; }

        public long Agreeing { get; set; }

        public long DisagreeingTies { get; set; }

        public long DisagreeingNotTies { get; set; }

        public double WorstDisagreementSteps { get; set; }

        public long[] LayerDecisions { get; } = new long[moeLayers];

        public long[] LayerAgreeing { get; } = new long[moeLayers];

        public List<int> GreedyMatches { get; } = [];

        public List<double> DivergenceGaps { get; } = [];

        public double Agreement => Decisions == 0 ? 0 : Agreeing / (double)Decisions;

        public string Describe() =>
            $"greedy tokens equal for {string.Join(',', GreedyMatches)}; routing {Agreeing}/{Decisions} = {Agreement:P3} agree, " +
            $"{DisagreeingTies} near-tie and {DisagreeingNotTies} other disagreements (worst {WorstDisagreementSteps:F1} bf16 steps), " +
            $"reference top-2 gap at each divergence [{string.Join(',', DivergenceGaps.Select(g => g.ToString("G3", System.Globalization.CultureInfo.InvariantCulture)))}]";

        public void Write(System.Text.Json.Utf8JsonWriter w)
        {
            w.WriteStartArray("greedy_tokens_equal");
            foreach (var n in GreedyMatches)
            {
                w.WriteNumberValue(n);
            }
            w.WriteEndArray();
            w.WriteStartArray("reference_top2_gap_at_divergence");
            foreach (var g in DivergenceGaps)
            {
                w.WriteNumberValue(g);
            }
            w.WriteEndArray();
            w.WriteNumber("routing_decisions", Decisions);
            w.WriteNumber("routing_agreeing", Agreeing);
            w.WriteNumber("routing_agreement", Agreement);
            w.WriteNumber("disagreements_near_tie", DisagreeingTies);
            w.WriteNumber("disagreements_not_near_tie", DisagreeingNotTies);
            w.WriteNumber("worst_disagreement_bf16_steps", WorstDisagreementSteps);
            w.WriteStartArray("routing_agreement_per_moe_layer");
            for (var m = 0; m < LayerDecisions.Length; m++)
            {
                w.WriteNumberValue(LayerDecisions[m] == 0 ? 0 : LayerAgreeing[m] / (double)LayerDecisions[m]);
            }
            w.WriteEndArray();
        }
    }

    /// <summary>Every prompt alone with logits at every position, against the reference's full-prompt forward.</summary>
    private static (double WorstTop5, int Top1Differ, int Positions) ComparePromptLogits(string modelDirectory, JsonElement[] cases)
    {
        var longest = cases.Max(c => c.GetProperty("prompt_ids").GetArrayLength());
        const int blockSize = 16;
        var blocks = (longest + blockSize - 1) / blockSize;
        using var checkpoint = Checkpoint.Open(modelDirectory);
        using var backend = CudaBackend.Load(checkpoint, new CudaBackendOptions(blockSize, longest, 1, blocks * blockSize, blocks, MaxLogitRows: longest));
        double worst = 0;
        int top1Differ = 0, positions = 0;
        foreach (var c in cases)
        {
            var ids = c.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            using var batch = new ForwardBatch(ids.Length, 1, blocks, backend.RoutingFormat, backend.Config.VocabSize, ids.Length, backend.AllocateHostBuffer);
            var s = batch.AddSequence(Enumerable.Range(0, blocks).ToArray());
            for (var p = 0; p < ids.Length; p++)
            {
                batch.AddToken(s, ids[p], p, p, needsLogits: true);
            }
            backend.Forward(batch);
            var topIds = c.GetProperty("prefill_top5_ids");
            var topValues = c.GetProperty("prefill_top5_values");
            for (var p = 0; p < ids.Length; p++)
            {
                positions++;
                var logits = batch.LogitRow(p);
                var refIds = topIds[p].EnumerateArray().Select(e => e.GetInt32()).ToArray();
                var refValues = topValues[p].EnumerateArray().Select(e => e.GetDouble()).ToArray();
                for (var j = 0; j < refIds.Length; j++)
                {
                    worst = Math.Max(worst, Math.Abs(logits[refIds[j]] - refValues[j]));
                }
                top1Differ += Numerics.TopIndices(logits, 1)[0] != refIds[0] ? 1 : 0;
            }
        }
        return (worst, top1Differ, positions);
    }

    private sealed class Collector : IRequestSink
    {
        public RequestResult? Result { get; private set; }

        public void OnDelta(StreamDelta delta)
        {
        }

        public void OnFinished(RequestResult result) => Result = result;
    }
}
