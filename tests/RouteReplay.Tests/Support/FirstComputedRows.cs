using System.Runtime.InteropServices;
using RouteReplay.Backends;
using RouteReplay.Cache;
using RouteReplay.Engine;
using RouteReplay.Routing;

namespace RouteReplay.Tests.Support;

/// <summary>
/// Records, for every request, choice and position, the routing row of the first KV that choice had at that position,
/// and checks returned routing against it: a row must never change once produced.
/// </summary>
/// <remarks>
/// A position computed by the choice's own forward is recorded with the row that forward returned (the step's routing
/// buffer, before capture could alter it). A position the choice got without computing it, from a prefix-cache hit on
/// either tier or from a transfer, is recorded with the rows its block held when the choice got it. Later computations
/// of a position (recompute after preemption, a second recompute, ...) never replace the first record. A request id
/// used again by a new request starts a new record. Attach before adding requests.
/// </remarks>
public sealed class FirstComputedRows : IStepObserver
{
    private readonly RoutingChannel _channel;
    private readonly Dictionary<string, Entry> _requests = [];

    private FirstComputedRows(LlmEngine engine)
    {
        _channel = engine.Pool.Channels.OfType<RoutingChannel>().Single();
        Format = engine.RoutingFormat;
    }

    public RoutingFormat Format { get; }

    /// <summary>Starts recording every step of <paramref name="engine"/> (it replaces any other step observer).</summary>
    public static FirstComputedRows Attach(LlmEngine engine)
    {
        var recorder = new FirstComputedRows(engine);
        engine.StepObserver = recorder;
        return recorder;
    }

    /// <summary>How many leading positions of the choice have a recorded row (0 when the request was never seen).</summary>
    public int Count(string requestId, int choice = 0) =>
        _requests.TryGetValue(requestId, out var entry) && choice < entry.Choices.Length ? entry.Choices[choice].Count / Format.RowBytes : 0;

    /// <summary>The recorded rows of positions <c>[start, start + count)</c>, <c>[count, L_moe, K]</c>.</summary>
    /// <exception cref="Xunit.Sdk.XunitException">Some of those positions were never recorded.</exception>
    public byte[] Rows(string requestId, int choice, int start, int count)
    {
        var recorded = Count(requestId, choice);
        if (start + count > recorded)
        {
            throw new Xunit.Sdk.XunitException($"request '{requestId}' choice {choice}: rows {start}..{start + count - 1} asked, only {recorded} recorded");
        }
        return CollectionsMarshal.AsSpan(_requests[requestId].Choices[choice]).Slice(start * Format.RowBytes, count * Format.RowBytes).ToArray();
    }

    /// <summary>
    /// Asserts that every routing row of every choice of <paramref name="result"/> that carries routing equals the row
    /// its token was first computed with, naming the first position that differs.
    /// </summary>
    public void AssertUnchanged(RequestResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        foreach (var choice in result.Choices)
        {
            if (choice.Routing is not { } routing)
            {
                continue;
            }
            var expected = Rows(result.RequestId, choice.Index, routing.Start, routing.RowCount);
            var rowBytes = Format.RowBytes;
            for (var r = 0; r < routing.RowCount; r++)
            {
                var actual = routing.Data.AsSpan(r * rowBytes, rowBytes);
                var first = expected.AsSpan(r * rowBytes, rowBytes);
                if (!actual.SequenceEqual(first))
                {
                    throw new Xunit.Sdk.XunitException(
                        $"request '{result.RequestId}' choice {choice.Index} position {routing.Start + r}: returned row [{string.Join(',', actual.ToArray())}] but its token was first computed with [{string.Join(',', first.ToArray())}]");
                }
            }
        }
    }

    /// <summary><see cref="AssertUnchanged(RequestResult)"/> for each result; asserts there is at least one routing row in all.</summary>
    public void AssertUnchanged(IEnumerable<RequestResult> results)
    {
        var rows = 0;
        foreach (var result in results)
        {
            AssertUnchanged(result);
            rows += result.Choices.Sum(c => c.Routing?.RowCount ?? 0);
        }
        Assert.True(rows > 0, "no result carried routing rows to check");
    }

    void IStepObserver.OnForward(IReadOnlyList<ScheduledChunk> chunks, ForwardBatch batch)
    {
        var rowBytes = Format.RowBytes;
        var token = 0;
        foreach (var (sequence, tokens) in chunks)
        {
            var rows = RowsOf(sequence);
            var recorded = rows.Count / rowBytes;
            var computed = sequence.ComputedTokens;
            if (recorded < computed)
            {
                var received = new byte[(computed - recorded) * rowBytes];
                _channel.Gather(CollectionsMarshal.AsSpan(sequence.BlockTable), recorded, computed - recorded, received);
                rows.AddRange(received);
                recorded = computed;
            }
            for (var i = 0; i < tokens; i++)
            {
                if (computed + i == recorded)
                {
                    rows.AddRange(batch.RoutingRow(token + i));
                    recorded++;
                }
            }
            token += tokens;
        }
    }

    private List<byte> RowsOf(Sequence sequence)
    {
        var id = sequence.Request.Request.RequestId;
        if (!_requests.TryGetValue(id, out var entry) || !ReferenceEquals(entry.State, sequence.Request))
        {
            _requests[id] = entry = new Entry(sequence.Request, [.. Enumerable.Range(0, sequence.Request.Choices.Length).Select(_ => new List<byte>())]);
        }
        return entry.Choices[sequence.Choice];
    }

    private sealed record Entry(RequestState State, List<byte>[] Choices);
}
