using RouteReplay.Cache;

namespace RouteReplay.Tests.Support;

/// <summary>
/// Takes every free block of a pool between steps (evicting cached ones, which the host tier may demote) and gives
/// them back later, so a test decides exactly when the scheduler runs out of blocks and preempts.
/// </summary>
public sealed class BlockThief(BlockPool pool)
{
    private readonly List<int> _held = [];

    public int Held => _held.Count;

    public void TakeAllFree()
    {
        while (pool.CanAllocate(1))
        {
            _held.Add(pool.Allocate());
        }
    }

    public void GiveBack()
    {
        pool.ReleaseSequence(_held.ToArray());
        _held.Clear();
    }
}
