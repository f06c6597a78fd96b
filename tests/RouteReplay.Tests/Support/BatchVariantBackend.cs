using RouteReplay.Backends;

namespace RouteReplay.Tests.Support;

/// <summary>
/// A backend whose routing is not batch invariant, as a GPU's may not be: every routing row the engine did not force
/// depends on the token's place in the step, while forced rows are honoured exactly. The KV, logits and routing it
/// returns are consistent with each other (they come from one forward that used exactly the returned rows), so a token
/// computed twice in different batches gets a different, equally valid row. Tests run the engine on it to prove that
/// a row never changes once produced: the CPU backend alone is batch invariant and would hide such a change.
/// </summary>
/// <remarks>
/// Each step runs the inner forward twice. The first pass routes normally (forced rows stay forced). Every unforced
/// row's expert ids are then shifted by <see cref="Shift"/> (modulo the expert count, so the ids in a row stay
/// distinct), and a second pass with every row forced writes the KV and logits the engine sees. Wraps any
/// <see cref="IModelBackend"/>; not thread-safe, like the backends it wraps.
/// </remarks>
public sealed class BatchVariantBackend(IModelBackend inner) : DelegatingBackend(inner)
{
    private ForwardBatch? _replay;
    private byte[] _row = [];

    /// <summary>Rows of tokens routed without a forced row, each shifted by a batch-dependent amount, since creation.</summary>
    public long ShiftedRows { get; private set; }

    /// <summary>Rows the engine forced (replayed routing), honoured unchanged, since creation.</summary>
    public long ForcedRows { get; private set; }

    /// <summary>
    /// How far the expert ids of the unforced token at <paramref name="tokenIndex"/> of a step of
    /// <paramref name="stepTokens"/> tokens are shifted: in <c>1 .. numExperts - 1</c>, never 0, so a shifted row always
    /// differs from the inner backend's, and it changes with both the token's index and the step's size.
    /// </summary>
    public static int Shift(int tokenIndex, int stepTokens, int numExperts)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numExperts, 2);
        return 1 + ((tokenIndex + stepTokens) % (numExperts - 1));
    }

    public override void Forward(ForwardBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var n = batch.TokenCount;
        if (n == 0)
        {
            return;
        }
        Inner.Forward(batch);
        var replay = ReplayBatchLike(batch);
        var format = batch.RoutingFormat;
        if (_row.Length != format.RowBytes)
        {
            _row = new byte[format.RowBytes];
        }
        var row = _row;
        var logitRow = 0;
        for (var s = 0; s < batch.SequenceCount; s++)
        {
            replay.AddSequence(batch.BlockTable(s));
        }
        for (var t = 0; t < n; t++)
        {
            var forced = batch.ForcedRouting.AsSpan(t * format.RowBytes, format.RowBytes);
            if (batch.HasForcedRouting && !format.IsUnsetRow(forced))
            {
                forced.CopyTo(row);
                ForcedRows++;
            }
            else
            {
                var shift = Shift(t, n, format.NumExperts);
                var routed = batch.RoutingRow(t);
                for (var i = 0; i < format.ElementsPerRow; i++)
                {
                    format.Set(row, i, (format.Get(routed, i) + shift) % format.NumExperts);
                }
                ShiftedRows++;
            }
            var needsLogits = logitRow < batch.LogitRowCount && batch.LogitTokens[logitRow] == t;
            if (needsLogits)
            {
                logitRow++;
            }
            replay.AddToken(batch.TokenSequence[t], batch.TokenIds[t], batch.Positions[t], batch.SlotMapping[t], needsLogits, row);
        }
        Inner.Forward(replay);
        replay.Routing[..(n * format.RowBytes)].CopyTo(batch.Routing);
        for (var r = 0; r < batch.LogitRowCount; r++)
        {
            replay.LogitRow(r).CopyTo(batch.LogitRow(r));
        }
    }

    private ForwardBatch ReplayBatchLike(ForwardBatch batch)
    {
        if (_replay is null || _replay.MaxTokens != batch.MaxTokens || _replay.MaxSequences != batch.MaxSequences
            || _replay.MaxBlocksPerSequence != batch.MaxBlocksPerSequence || _replay.MaxLogitRows != batch.MaxLogitRows)
        {
            _replay = new ForwardBatch(batch.MaxTokens, batch.MaxSequences, batch.MaxBlocksPerSequence, batch.RoutingFormat, batch.VocabSize, batch.MaxLogitRows);
        }
        _replay.Clear();
        return _replay;
    }
}
