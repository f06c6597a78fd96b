using RouteReplay.Backends;

namespace RouteReplay.Engine;

/// <summary>
/// Draws the next token, and its logprobs when asked, of every sequence that completed its tokens in a step. A greedy
/// row takes the backend's argmax when it returned one; the others are sampled from their logit rows on the host, on
/// several threads when there are enough of them (a 150k-wide row costs a fraction of a millisecond to sample). Each
/// row's draw depends only on its logits and its sequence's own generator, so the threads change nothing.
/// </summary>
internal sealed class StepSampler(int vocabSize, int tokenLimit)
{
    /// <summary>Rows a worker gets at least before the draws are spread over threads.</summary>
    private const int RowsPerWorker = 4;

    private readonly Sampler?[] _samplers = new Sampler?[Math.Clamp(Environment.ProcessorCount, 1, 16)];
    private readonly List<Sequence> _sequences = [];
    private readonly List<int> _rows = [];
    private int[] _tokens = [];
    private TokenLogprob?[] _logprobs = [];

    public int Count => _sequences.Count;

    public Sequence SequenceAt(int i) => _sequences[i];

    public int Token(int i) => _tokens[i];

    public TokenLogprob? Logprob(int i) => _logprobs[i];

    public void Clear()
    {
        _sequences.Clear();
        _rows.Clear();
    }

    /// <summary>Queues <paramref name="sequence"/>'s draw from logit row <paramref name="row"/>.</summary>
    public void Add(Sequence sequence, int row)
    {
        _sequences.Add(sequence);
        _rows.Add(row);
    }

    public void Draw(ForwardBatch batch)
    {
        var count = _sequences.Count;
        if (_tokens.Length < count)
        {
            _tokens = new int[Math.Max(count, batch.MaxLogitRows)];
            _logprobs = new TokenLogprob?[_tokens.Length];
        }
        var onHost = 0;
        for (var i = 0; i < count; i++)
        {
            onHost += NeedsLogits(batch, _sequences[i]) ? 1 : 0;
        }
        var workers = Math.Min(_samplers.Length, onHost / RowsPerWorker);
        if (workers <= 1)
        {
            for (var i = 0; i < count; i++)
            {
                DrawOne(batch, 0, i);
            }
            return;
        }
        Parallel.For(0, workers, worker =>
        {
            for (var i = worker; i < count; i += workers)
            {
                DrawOne(batch, worker, i);
            }
        });
    }

    private static bool NeedsLogits(ForwardBatch batch, Sequence sequence) =>
        !(sequence.Request.Request.Sampling.IsGreedy && batch.HasArgMax) || sequence.Logprobs is not null;

    private void DrawOne(ForwardBatch batch, int worker, int i)
    {
        var sequence = _sequences[i];
        var row = _rows[i];
        var request = sequence.Request.Request;
        var token = request.Sampling.IsGreedy && batch.HasArgMax
            ? batch.ArgMax(row)
            : (_samplers[worker] ??= new Sampler(vocabSize)).Sample(batch.LogitRow(row), tokenLimit, request.Sampling, ref sequence.Random);
        _tokens[i] = token;
        _logprobs[i] = sequence.Logprobs is null ? null : LogprobCalculator.Compute(batch.LogitRow(row), tokenLimit, token, request.Logprobs!.Value);
    }
}
