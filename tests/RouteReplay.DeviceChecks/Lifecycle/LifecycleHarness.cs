using System.Runtime.InteropServices;
using RouteReplay.Backends;
using RouteReplay.Engine;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.DeviceChecks.Lifecycle;

/// <summary>What a lifecycle run proved: every returned row against the row its position was first computed with.</summary>
public sealed record LifecycleOutcome(string Scenario, int Requests, int Choices, long RowsChecked, long RowsDiffering, long RowsWithoutComputation, int ForcedRowsSeen, int ForcedRowsIgnored, int FailedRequests, int BlocksLeft, EngineStats Stats)
{
    /// <summary>The scenario's own expectations (its path was taken) that did not hold.</summary>
    public IReadOnlyList<string> PathProblems { get; init; } = [];

    public bool Passed => RowsDiffering == 0 && RowsWithoutComputation == 0 && ForcedRowsIgnored == 0 && FailedRequests == 0 && BlocksLeft == 0 && RowsChecked > 0 && PathProblems.Count == 0;
}

/// <summary>
/// Runs an engine over a <see cref="FirstRowRecorder"/> with a <see cref="ComputationChannel"/>. After every step it
/// notes, for each live choice, which computation each newly computed position used (read from the channel through
/// the block table: its own computation, a shared prefix block's, a swapped or promoted copy's). When the choice
/// finishes, each returned routing row must equal the row recorded for the position's first computation: a
/// recompute must replay it, a copy must carry it, a shared block must already hold it. Works on any backend; on a
/// GPU, whose routing depends on the batch, it is what shows rows never change once produced.
/// </summary>
public sealed class LifecycleHarness : IRequestSink, IDisposable
{
    private readonly Dictionary<(string Request, int Choice), Dictionary<int, (int Step, int Token)>> _first = [];
    private readonly Dictionary<(string Request, int Choice), int> _observed = [];
    private readonly List<(string Id, int N)> _submitted = [];

    public LifecycleHarness(IModelBackend backend, TextTokenizer tokenizer, EngineOptions options)
    {
        Recorder = new FirstRowRecorder(backend);
        Channel = new ComputationChannel(backend.NumBlocks, backend.BlockSize, Recorder);
        Engine = new LlmEngine(Recorder, tokenizer, [], options with { NumBlocks = 0 }, weightsIdentity: "lifecycle", [Channel]);
    }

    public FirstRowRecorder Recorder { get; }

    public ComputationChannel Channel { get; }

    public LlmEngine Engine { get; }

    public Dictionary<string, RequestResult> Results { get; } = [];

    public void Add(EngineRequest request)
    {
        Engine.AddRequest(request, this);
        _submitted.Add((request.RequestId, request.N));
    }

    public bool Step()
    {
        var more = Engine.Step();
        Observe();
        return more;
    }

    public void RunToCompletion()
    {
        while (Step())
        {
        }
    }

    public void OnDelta(StreamDelta delta)
    {
    }

    public void OnFinished(RequestResult result) => Results[result.RequestId] = result;

    public LifecycleOutcome Verify(string scenario)
    {
        var format = Engine.RoutingFormat;
        long checkedRows = 0, differing = 0, missing = 0;
        var failed = 0;
        var choices = 0;
        foreach (var result in Results.Values)
        {
            if (result.Error is not null)
            {
                failed++;
                continue;
            }
            for (var c = 0; c < result.Choices.Count; c++)
            {
                var choice = result.Choices[c];
                if (choice.Routing is not { } routing || result.AuxiliaryRows.Count <= c || result.AuxiliaryRows[c] is not { } aux)
                {
                    continue;
                }
                choices++;
                var computations = aux[Channel.Name];
                var first = _first.GetValueOrDefault((result.RequestId, c));
                for (var r = 0; r < routing.RowCount; r++)
                {
                    var position = routing.Start + r;
                    var id = first is not null && first.TryGetValue(position, out var seen)
                        ? seen
                        : ComputationChannel.Read(computations.AsSpan(r * Channel.RowBytes, Channel.RowBytes));
                    var expected = Recorder.Row(id.Step, id.Token);
                    checkedRows++;
                    if (expected is null)
                    {
                        missing++;
                    }
                    else if (!expected.AsSpan().SequenceEqual(routing.Data.AsSpan(r * format.RowBytes, format.RowBytes)))
                    {
                        differing++;
                    }
                }
            }
        }
        return new LifecycleOutcome(scenario, Results.Count, choices, checkedRows, differing, missing, Recorder.ForcedRowsSeen, Recorder.ForcedRowsIgnored, failed, Engine.Pool.UsedBlockCount, Engine.Stats);
    }

    public void Dispose() => Engine.Dispose();

    private void Observe()
    {
        var blockSize = Engine.Options.BlockSize;
        foreach (var (id, n) in _submitted)
        {
            for (var c = 0; c < n; c++)
            {
                if (Engine.FindSequence(id, c) is not { Status: SequenceStatus.Running } sequence)
                {
                    continue;
                }
                var key = (id, c);
                var from = _observed.GetValueOrDefault(key);
                if (sequence.ComputedTokens <= from)
                {
                    continue;
                }
                if (!_first.TryGetValue(key, out var first))
                {
                    _first[key] = first = [];
                }
                var table = CollectionsMarshal.AsSpan(sequence.BlockTable);
                for (var p = from; p < sequence.ComputedTokens; p++)
                {
                    var slot = (table[p / blockSize] * blockSize) + (p % blockSize);
                    first.TryAdd(p, ComputationChannel.Read(Channel.Row(slot)));
                }
                _observed[key] = sequence.ComputedTokens;
            }
        }
    }
}
