using RouteReplay.Backends;
using RouteReplay.Backends.Cuda;
using RouteReplay.Model.Presets;

namespace RouteReplay.DeviceChecks;

/// <summary>
/// Dummy weights at full size: two backends made from the same seed give bit-identical logits and routing, another
/// seed gives different ones; the logits are finite with a sane spread, and every MoE layer routes to every expert
/// over one long prompt (the make-model distributions keep deep layers from collapsing onto a few experts).
/// </summary>
public static class DummyCheck
{
    public static CheckResult Run(string preset, int promptTokens)
    {
        var config = ModelPresets.Get(preset).Config;
        var options = new CudaBackendOptions(16, promptTokens, 1, promptTokens + 16, (promptTokens / 16) + 2, MaxLogitRows: 16);
        var prompt = new int[promptTokens];
        var random = new Engine.SeededRandom(2026);
        for (var i = 0; i < prompt.Length; i++)
        {
            prompt[i] = (int)(random.NextDouble() * 150_000);
        }
        var (logitsA, routingA, device, weightBytes) = Forward(config, 0, options, prompt);
        var (logitsB, routingB, _, _) = Forward(config, 0, options, prompt);
        var (logitsC, routingC, _, _) = Forward(config, 1, options, prompt);
        var reproducible = logitsA.AsSpan().SequenceEqual(logitsB) && routingA.AsSpan().SequenceEqual(routingB);
        var seedMatters = !logitsA.AsSpan().SequenceEqual(logitsC) && !routingA.AsSpan().SequenceEqual(routingC);
        var finite = logitsA.All(float.IsFinite);
        var mean = logitsA.Average(x => (double)x);
        var std = Math.Sqrt(logitsA.Average(x => (x - mean) * (x - mean)));
        var format = Routing.RoutingFormat.For(config);
        var minUsed = int.MaxValue;
        for (var m = 0; m < format.MoeLayerCount; m++)
        {
            var used = new HashSet<int>();
            for (var t = 0; t < promptTokens; t++)
            {
                used.UnionWith(Numerics.Experts(format, routingA.AsSpan(t * format.RowBytes, format.RowBytes), m));
            }
            minUsed = Math.Min(minUsed, used.Count);
        }
        var passed = reproducible && seedMatters && finite && std is > 0.05 and < 100 && minUsed == config.NumExperts;
        var summary = $"{preset} on {device}: {weightBytes / 1e9:F1} GB of weights; same seed identical {reproducible}, other seed differs {seedMatters}; " +
            $"logits finite {finite}, std {std:F3}; fewest experts used by a MoE layer over {promptTokens} tokens: {minUsed} of {config.NumExperts}";
        return new CheckResult($"dummy-{preset}", passed, summary, w =>
        {
            w.WriteString("device", device);
            w.WriteNumber("weight_bytes", weightBytes);
            w.WriteBoolean("same_seed_identical", reproducible);
            w.WriteBoolean("other_seed_differs", seedMatters);
            w.WriteBoolean("logits_finite", finite);
            w.WriteNumber("logit_std", std);
            w.WriteNumber("min_experts_used_per_layer", minUsed);
            w.WriteNumber("prompt_tokens", promptTokens);
        });
    }

    private static (float[] Logits, byte[] Routing, string Device, long WeightBytes) Forward(Model.Checkpoints.ModelConfig config, ulong seed, CudaBackendOptions options, int[] prompt)
    {
        using var backend = CudaBackend.CreateDummy(config, seed, options);
        using var batch = new ForwardBatch(prompt.Length, 1, options.MaxBlocksPerSequence, backend.RoutingFormat, config.VocabSize, 16, backend.AllocateHostBuffer);
        var s = batch.AddSequence(Enumerable.Range(0, options.MaxBlocksPerSequence).ToArray());
        for (var p = 0; p < prompt.Length; p++)
        {
            batch.AddToken(s, prompt[p], p, p, needsLogits: p >= prompt.Length - 16);
        }
        backend.Forward(batch);
        var logits = new List<float>();
        for (var r = 0; r < batch.LogitRowCount; r++)
        {
            logits.AddRange(batch.LogitRow(r).ToArray());
        }
        var routing = new byte[prompt.Length * backend.RoutingFormat.RowBytes];
        for (var t = 0; t < prompt.Length; t++)
        {
            batch.RoutingRow(t).CopyTo(routing.AsSpan(t * backend.RoutingFormat.RowBytes));
        }
        return ([.. logits], routing, backend.DeviceName, backend.WeightBytes);
    }
}
