using RouteReplay.DeviceChecks;

namespace RouteReplay.Tests.Families;

/// <summary>
/// Each family's CPU forward against transformers' own fp32 forward, on tiny checkpoints transformers wrote
/// (<c>Fixtures/families</c>, made by <c>scripts/hf_family_fixtures.py</c>): every routing decision and greedy token
/// equal, except at near-ties, and the top logits within tolerance.
/// </summary>
public sealed class TransformersFixtureTests
{
    [Theory]
    [InlineData("olmoe-tiny")]
    [InlineData("qwen2-moe-tiny")]
    [InlineData("mixtral-tiny")]
    [InlineData("gpt-oss-tiny")]
    [InlineData("deepseek-v3-tiny")]
    [InlineData("moonlight-tiny")]
    public void Routing_and_greedy_tokens_equal_transformers(string fixture)
    {
        var result = FamilyReferenceCheck.Compare(Path.Combine(AppContext.BaseDirectory, "Fixtures", "families", fixture));

        Assert.True(result.Passed, result.Summary);
    }
}
