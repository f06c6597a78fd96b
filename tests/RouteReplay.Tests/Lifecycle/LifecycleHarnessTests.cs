using RouteReplay.DeviceChecks.Lifecycle;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Lifecycle;

/// <summary>
/// The lifecycle harness the GPU checks use, run here on the CPU backend: every scenario passes on a correct engine,
/// also when the backend's routing depends on the batch (as a GPU's may), and the harness fails when a backend
/// ignores forced rows or when rows are altered after the forward.
/// </summary>
public sealed class LifecycleHarnessTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    public static TheoryData<string> Scenarios => [.. LifecycleScenarios.Names];

    [Theory]
    [MemberData(nameof(Scenarios))]
    public void Every_scenario_returns_the_rows_each_token_was_first_computed_with(string scenario)
    {
        var outcome = LifecycleScenarios.Run(scenario, Backend(scenario), model.Tokenizer);
        Assert.True(outcome.Passed, LifecycleScenarios.Describe(outcome));
    }

    [Theory]
    [MemberData(nameof(Scenarios))]
    public void A_backend_whose_routing_depends_on_the_batch_still_gets_its_first_rows_back(string scenario)
    {
        var outcome = LifecycleScenarios.Run(scenario, new BatchVariantRouting(Backend(scenario), honourForced: true), model.Tokenizer);
        Assert.True(outcome.Passed, LifecycleScenarios.Describe(outcome));
    }

    [Fact]
    public void A_backend_that_ignores_forced_rows_is_caught()
    {
        var outcome = LifecycleScenarios.Run("recompute", new BatchVariantRouting(Backend("recompute"), honourForced: false), model.Tokenizer);
        Assert.False(outcome.Passed);
        Assert.True(outcome.ForcedRowsIgnored > 0, LifecycleScenarios.Describe(outcome));
        Assert.True(outcome.RowsDiffering > 0, LifecycleScenarios.Describe(outcome));
    }

    private RouteReplay.Backends.Cpu.CpuBackend Backend(string scenario)
    {
        var options = LifecycleScenarios.Options(scenario);
        return model.CreateBackend(options.ResolvedNumBlocks, options.BlockSize);
    }
}
