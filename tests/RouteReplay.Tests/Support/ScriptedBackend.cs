using RouteReplay.Backends;

namespace RouteReplay.Tests.Support;

/// <summary>
/// The CPU backend with its output scripted: the forward runs as usual (KV and routing are real), then the logits of a
/// request whose prompt has <paramref name="promptLength"/> tokens are overwritten so that output token <c>i</c> is
/// <c>script[i]</c> under greedy or any sampling. Lets tests of text handling (stop strings, surrogate pairs) choose
/// exactly what a random-weights model says. Past the script's end the model's own logits are left alone. Positions
/// are all it looks at, so a test sends only prompts of that length.
/// </summary>
public sealed class ScriptedBackend(IModelBackend inner, int promptLength, IReadOnlyList<int> script) : DelegatingBackend(inner)
{

    public override void Forward(ForwardBatch batch)
    {
        Inner.Forward(batch);
        for (var row = 0; row < batch.LogitRowCount; row++)
        {
            var output = batch.Positions[batch.LogitTokens[row]] + 1 - promptLength;
            if (output < 0 || output >= script.Count)
            {
                continue;
            }
            var logits = batch.LogitRow(row);
            logits.Fill(-100f);
            logits[script[output]] = 100f;
        }
    }
}
