using RouteReplay.Backends.Cuda;
using RouteReplay.DeviceChecks.Lifecycle;
using RouteReplay.Engine;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.DeviceChecks;

/// <summary>Every lifecycle scenario on the GPU: returned rows equal the rows each token was first computed with.</summary>
public static class LifecycleCheck
{
    public static IEnumerable<CheckResult> Run(string preset, string workDirectory)
    {
        var dir = Path.Combine(workDirectory, $"lifecycle-{preset}");
        ModelMaker.Make(ModelPresets.Get(preset), dir);
        var tokenizer = TextTokenizer.Load(dir);
        foreach (var scenario in LifecycleScenarios.Names)
        {
            var options = LifecycleScenarios.Options(scenario);
            CudaBackend backend;
            using (var checkpoint = Checkpoint.Open(dir))
            {
                backend = CudaBackend.Load(checkpoint, CudaBackendOptions.From(options with { Device = ComputeDevice.Cuda }));
            }
            var outcome = LifecycleScenarios.Run(scenario, backend, tokenizer);
            yield return new CheckResult($"lifecycle-{scenario}", outcome.Passed, LifecycleScenarios.Describe(outcome), w =>
            {
                w.WriteNumber("requests", outcome.Requests);
                w.WriteNumber("choices", outcome.Choices);
                w.WriteNumber("rows_checked", outcome.RowsChecked);
                w.WriteNumber("rows_differing_from_first_computation", outcome.RowsDiffering);
                w.WriteNumber("rows_without_computation", outcome.RowsWithoutComputation);
                w.WriteNumber("forced_rows_seen", outcome.ForcedRowsSeen);
                w.WriteNumber("forced_rows_ignored", outcome.ForcedRowsIgnored);
                w.WriteNumber("failed_requests", outcome.FailedRequests);
                w.WriteNumber("blocks_left", outcome.BlocksLeft);
                w.WriteNumber("preemptions_swap", outcome.Stats.PreemptionsBySwap);
                w.WriteNumber("preemptions_recompute", outcome.Stats.PreemptionsByRecompute);
                w.WriteNumber("recomputed_tokens", outcome.Stats.RecomputedTokens);
                w.WriteNumber("prefix_hit_tokens", outcome.Stats.PrefixCacheHitTokens);
            });
        }
    }
}
