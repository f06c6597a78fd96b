namespace RouteReplay.Tests.Disaggregation;

/// <summary>A log a peer cannot flood: one line of a kind per interval, and the next line says how many were left out.</summary>
public sealed class RateLimitedLogTests
{
    private sealed class ManualClock : TimeProvider
    {
        public long Ticks { get; set; }

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Ticks;
    }

    [Fact]
    public void Lines_of_one_kind_are_written_once_per_interval_with_the_count_of_those_left_out()
    {
        var clock = new ManualClock();
        var lines = new List<string>();
        var log = new RateLimitedLog(lines.Add, TimeSpan.FromSeconds(10), clock);

        for (var i = 0; i < 50; i++)
        {
            log.Write("refused", $"refused peer {i}");
            clock.Ticks += TimeSpan.TicksPerMillisecond * 250;
        }
        log.Write("failed", "a transfer failed");
        clock.Ticks += TimeSpan.TicksPerSecond * 10;
        log.Write("refused", "refused peer 50");

        Assert.Equal(
            [
                "refused peer 0",
                "refused peer 40 (39 more like it since the last such line were not logged)",
                "a transfer failed",
                "refused peer 50 (9 more like it since the last such line were not logged)",
            ],
            lines);
    }
}
