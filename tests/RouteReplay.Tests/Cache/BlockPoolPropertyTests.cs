using CsCheck;

namespace RouteReplay.Tests.Cache;

public sealed class BlockPoolPropertyTests
{
    private static readonly Gen<int[]> Tokens = Gen.Int[0, 1].Array[0, 10];

    private static readonly Gen<PoolOperation> Operation = Gen.Frequency(
        (5, Gen.Select(Gen.Int[0, 1000], Gen.Int[0, 4], Tokens, (pick, prefix, tokens) => new PoolOperation(PoolOperationKind.Admit, pick, prefix, tokens))),
        (3, Gen.Select(Gen.Int[0, 1000], Tokens, (pick, tokens) => new PoolOperation(PoolOperationKind.Append, pick, 0, tokens))),
        (3, Gen.Int[0, 1000].Select(pick => new PoolOperation(PoolOperationKind.Release, pick, 0, []))),
        (1, Gen.Int[0, 1000].Select(pick => new PoolOperation(PoolOperationKind.DoubleFree, pick, 0, []))),
        (1, Gen.Const(new PoolOperation(PoolOperationKind.ResetPrefixCache, 0, 0, []))));

    private static readonly Gen<PoolScenario> Scenario = Gen.Select(
        Gen.Int[1, 16],
        Gen.Int[1, 4],
        Gen.Frequency((4, Gen.Const(true)), (1, Gen.Const(false))),
        Gen.Bool,
        Operation.Array[0, 60],
        (blocks, size, caching, weak, operations) => new PoolScenario(blocks, size, caching, weak, operations));

    [Fact]
    public void The_pool_agrees_with_a_naive_model_and_never_leaks_or_mixes_payloads()
    {
        var total = new PoolCoverage();
        Scenario.Sample(
            scenario =>
            {
                var runner = new PoolScenarioRunner(scenario);
                runner.Run();
                total.Add(runner.Coverage);
            },
            iter: 3000,
            print: scenario => scenario.ToString());

        Assert.True(total.Hits > 1000, $"{total.Hits} hits");
        Assert.True(total.HitsOnFreeBlocks > 100, $"{total.HitsOnFreeBlocks} hits on free blocks");
        Assert.True(total.Evictions > 1000, $"{total.Evictions} evictions");
        Assert.True(total.Collisions > 100, $"{total.Collisions} collisions");
        Assert.True(total.Aborts > 100, $"{total.Aborts} aborted admissions");
        Assert.True(total.DoubleFrees > 100, $"{total.DoubleFrees} double frees");
    }
}
