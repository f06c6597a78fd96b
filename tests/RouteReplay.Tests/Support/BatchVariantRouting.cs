using RouteReplay.Backends;

namespace RouteReplay.Tests.Support;

/// <summary>
/// Routing that depends on the step's size, as on a GPU whose kernels vary with the batch: in steps of more than
/// one token, every expert id moves up by one (mod the expert count). Forced rows are kept as forced, unless told
/// to ignore them.
/// </summary>
public sealed class BatchVariantRouting(IModelBackend inner, bool honourForced) : DelegatingBackend(inner)
{
    public override void Forward(ForwardBatch batch)
    {
        Inner.Forward(batch);
        var format = RoutingFormat;
        for (var t = 0; t < batch.TokenCount; t++)
        {
            var forced = batch.HasForcedRouting && !format.IsUnsetRow(batch.ForcedRouting.AsSpan(t * format.RowBytes, format.RowBytes));
            if ((forced && honourForced) || (!forced && batch.TokenCount == 1))
            {
                continue;
            }
            var row = batch.RoutingRow(t);
            for (var i = 0; i < format.ElementsPerRow; i++)
            {
                format.Set(row, i, (format.Get(row, i) + 1) % format.NumExperts);
            }
        }
    }
}
