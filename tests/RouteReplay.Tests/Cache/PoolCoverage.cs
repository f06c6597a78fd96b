namespace RouteReplay.Tests.Cache;

/// <summary>Counts of the paths one scenario reached.</summary>
internal sealed class PoolCoverage
{
    public long Hits { get; set; }

    public long HitsOnFreeBlocks { get; set; }

    public long Evictions { get; set; }

    public long Collisions { get; set; }

    public long Aborts { get; set; }

    public long DoubleFrees { get; set; }

    public void Add(PoolCoverage other)
    {
        lock (this)
        {
            Hits += other.Hits;
            HitsOnFreeBlocks += other.HitsOnFreeBlocks;
            Evictions += other.Evictions;
            Collisions += other.Collisions;
            Aborts += other.Aborts;
            DoubleFrees += other.DoubleFrees;
        }
    }
}
