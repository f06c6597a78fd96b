using RouteReplay.Disaggregation;

namespace RouteReplay.Tests.Support;

/// <summary>The cluster key the tests' prefill/decode fleets share, and the flags that give it to a process.</summary>
public static class TestClusterKey
{
    public const string Value = "routereplay-test-fleet-key";

    public static ClusterKey Key { get; } = new(Value);

    public static string[] Flags => ["--cluster-key", Value];
}
