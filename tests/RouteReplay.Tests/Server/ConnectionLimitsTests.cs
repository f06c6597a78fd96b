using RouteReplay.Server.Http;

namespace RouteReplay.Tests.Server;

/// <summary>The connection budget: the open-files limit less the files open and the reserve, halved when each connection may bring another socket.</summary>
public sealed class ConnectionLimitsTests
{
    private static readonly TimeSpan KeepAlive = TimeSpan.FromSeconds(30);

    [Fact]
    public void Client_connections_get_what_the_open_files_limit_leaves_after_the_open_files_and_the_reserve()
    {
        var limits = ConnectionLimits.Derive((256, 1024), openNow: 108, otherSockets: false, KeepAlive);
        Assert.Equal(1024 - 108 - ConnectionLimits.Reserve, limits.MaxConnections);
        Assert.Equal(0, limits.MaxOtherSockets);
        Assert.Equal(1024, limits.OpenFilesLimit);
        Assert.Equal(256, limits.StartedWith);
        Assert.False(limits.BelowFewest);
        Assert.Contains("raised from 256", limits.Describe());
    }

    [Fact]
    public void A_server_whose_connections_open_sockets_of_their_own_shares_the_budget_with_them()
    {
        var limits = ConnectionLimits.Derive((1024, 1024), openNow: 100, otherSockets: true, KeepAlive);
        var budget = 1024 - 100 - ConnectionLimits.Reserve;
        Assert.Equal(budget / 2, limits.MaxConnections);
        Assert.Equal(budget - (budget / 2), limits.MaxOtherSockets);
    }

    [Fact]
    public void A_limit_too_low_to_serve_still_admits_the_fewest_and_says_so()
    {
        var limits = ConnectionLimits.Derive((300, 300), openNow: 200, otherSockets: false, KeepAlive);
        Assert.Equal(ConnectionLimits.Fewest, limits.MaxConnections);
        Assert.True(limits.BelowFewest);
    }

    [Fact]
    public void Without_an_open_files_limit_connections_are_not_limited()
    {
        var limits = ConnectionLimits.Derive(null, openNow: 50, otherSockets: true, KeepAlive);
        Assert.Null(limits.MaxConnections);
        Assert.Null(limits.MaxOtherSockets);
        Assert.Equal(KeepAlive, limits.KeepAlive);
    }

    [Fact]
    public void This_process_runs_with_its_soft_limit_raised_to_the_hard_limit()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        var limits = ConnectionLimits.ForThisProcess(otherSockets: false, KeepAlive);
        var hard = File.ReadLines("/proc/self/limits").Single(l => l.StartsWith("Max open files", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[4];
        Assert.Equal(hard == "unlimited" ? 1L << 20 : Math.Min(long.Parse(hard, System.Globalization.CultureInfo.InvariantCulture), 1L << 20), limits.OpenFilesLimit);
    }
}
