namespace RouteReplay.Engine;

/// <summary>
/// A cumulative histogram of step durations with fixed bucket bounds, written by the step thread and read by any
/// thread (each counter is read atomically; a reader may see one step counted in the total but not yet its bucket).
/// </summary>
public sealed class StepTimeHistogram
{
    /// <summary>Upper bounds of the buckets in seconds; a last implicit bucket is +Inf.</summary>
    public static readonly IReadOnlyList<double> BucketBounds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

    private readonly long[] _counts = new long[BucketBounds.Count + 1];
    private long _count;
    private long _sumTicks;

    public long Count => Interlocked.Read(ref _count);

    public double SumSeconds => Interlocked.Read(ref _sumTicks) / (double)TimeSpan.TicksPerSecond;

    /// <summary>Steps that took at most <see cref="BucketBounds"/>[i] seconds (i = bound count: all of them).</summary>
    public long CumulativeCount(int bucket)
    {
        long total = 0;
        for (var i = 0; i <= bucket; i++)
        {
            total += Interlocked.Read(ref _counts[i]);
        }
        return total;
    }

    public void Record(TimeSpan elapsed)
    {
        var seconds = elapsed.TotalSeconds;
        var bucket = 0;
        while (bucket < BucketBounds.Count && seconds > BucketBounds[bucket])
        {
            bucket++;
        }
        Interlocked.Increment(ref _counts[bucket]);
        Interlocked.Add(ref _sumTicks, elapsed.Ticks);
        Interlocked.Increment(ref _count);
    }
}
