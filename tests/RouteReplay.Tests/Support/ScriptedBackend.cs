using RouteReplay.Backends;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Routing;

namespace RouteReplay.Tests.Support;

/// <summary>
/// The CPU backend with its output scripted: the forward runs as usual (KV and routing are real), then the logits of a
/// request whose prompt has <paramref name="promptLength"/> tokens are overwritten so that output token <c>i</c> is
/// <c>script[i]</c> under greedy or any sampling. Lets tests of text handling (stop strings, surrogate pairs) choose
/// exactly what a random-weights model says. Past the script's end the model's own logits are left alone. Positions
/// are all it looks at, so a test sends only prompts of that length.
/// </summary>
public sealed class ScriptedBackend(IModelBackend inner, int promptLength, IReadOnlyList<int> script) : IModelBackend
{
    public ModelConfig Config => inner.Config;

    public RoutingFormat RoutingFormat => inner.RoutingFormat;

    public int BlockSize => inner.BlockSize;

    public int NumBlocks => inner.NumBlocks;

    public TensorDType KvDType => inner.KvDType;


    public int KvBytesPerBlock => inner.KvBytesPerBlock;

    public void ReadBlockKv(int block, Span<byte> destination) => inner.ReadBlockKv(block, destination);

    public void WriteBlockKv(int block, ReadOnlySpan<byte> source) => inner.WriteBlockKv(block, source);

    public void Forward(ForwardBatch batch)
    {
        inner.Forward(batch);
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

    public void Dispose() => inner.Dispose();
}
