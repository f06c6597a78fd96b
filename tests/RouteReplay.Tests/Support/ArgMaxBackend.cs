using RouteReplay.Backends;
using RouteReplay.Engine;

namespace RouteReplay.Tests.Support;

/// <summary>
/// Wraps a backend as a GPU backend behaves: every logit row's argmax (below the batch's limit) is returned, and when
/// the batch does not want its logit rows they are overwritten with NaN, so a caller that reads them anyway gets
/// garbage. Counts the steps that skipped their logits.
/// </summary>
public sealed class ArgMaxBackend(IModelBackend inner) : DelegatingBackend(inner)
{
    public int StepsWithoutLogits { get; private set; }

    public int StepsWithLogits { get; private set; }

    public override void Forward(ForwardBatch batch)
    {
        Inner.Forward(batch);
        for (var row = 0; row < batch.LogitRowCount; row++)
        {
            var logits = batch.LogitRow(row);
            var limit = batch.ArgMaxLimit > 0 ? Math.Min(batch.ArgMaxLimit, logits.Length) : logits.Length;
            var best = Sampler.ArgMax(logits[..limit]);
            batch.SetArgMax(row, best);
            if (!batch.LogitsWanted)
            {
                logits.Fill(float.NaN);
            }
        }
        batch.HasArgMax = batch.LogitRowCount > 0;
        if (batch.LogitsWanted)
        {
            StepsWithLogits++;
        }
        else
        {
            StepsWithoutLogits++;
        }
    }
}
