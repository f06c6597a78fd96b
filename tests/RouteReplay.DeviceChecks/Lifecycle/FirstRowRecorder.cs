using RouteReplay.Backends;

namespace RouteReplay.DeviceChecks.Lifecycle;

/// <summary>
/// Wraps a backend and records the routing row every forward produced, keyed by (step, token index): each token
/// computation once. Also counts forwards that did not honour a forced row. Every call reaches the inner backend
/// unchanged, the batched asynchronous copies included.
/// </summary>
public sealed class FirstRowRecorder(IModelBackend inner) : DelegatingBackend(inner)
{
    private readonly Dictionary<long, byte[]> _rows = [];

    /// <summary>The step being computed (1 for the first forward); the computation channel writes it.</summary>
    public int CurrentStep { get; private set; }

    /// <summary>Tokens whose produced row differed from the row the batch forced.</summary>
    public int ForcedRowsIgnored { get; private set; }

    /// <summary>Tokens computed with a forced row.</summary>
    public int ForcedRowsSeen { get; private set; }

    public static long Key(int step, int token) => ((long)step << 32) | (uint)token;

    /// <summary>The row token <paramref name="token"/> of step <paramref name="step"/> was computed with.</summary>
    public byte[]? Row(int step, int token) => _rows.GetValueOrDefault(Key(step, token));

    public override void Forward(ForwardBatch batch)
    {
        CurrentStep++;
        Inner.Forward(batch);
        var format = RoutingFormat;
        for (var t = 0; t < batch.TokenCount; t++)
        {
            var row = batch.RoutingRow(t).ToArray();
            _rows[Key(CurrentStep, t)] = row;
            if (!batch.HasForcedRouting)
            {
                continue;
            }
            var forced = batch.ForcedRouting.AsSpan(t * format.RowBytes, format.RowBytes);
            if (!format.IsUnsetRow(forced))
            {
                ForcedRowsSeen++;
                if (!forced.SequenceEqual(row))
                {
                    ForcedRowsIgnored++;
                }
            }
        }
    }
}
