using RouteReplay.Backends;
using RouteReplay.Backends.Cpu;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Backends;

public sealed class CpuBackendTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private static readonly int[] PromptA = [9707, 11, 1879, 0, 576, 6722, 315, 9625, 374, 12095, 13, 576, 6722, 315, 9856, 374, 19846, 13, 151645];
    private static readonly int[] PromptB = [151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30];

    private sealed record Run(float[] LastLogits, byte[] Routing);

    /// <summary>Runs one sequence alone in one forward, positions in slots 0.., and keeps the last token's logits.</summary>
    private static Run RunAlone(CpuBackend backend, int[] tokens, byte[]? forced = null)
    {
        var batch = NewBatch(backend, tokens.Length);
        var seq = batch.AddSequence(Enumerable.Range(0, 8).ToArray());
        for (var p = 0; p < tokens.Length; p++)
        {
            var row = forced is null ? default : forced.AsSpan(p * backend.RoutingFormat.RowBytes, backend.RoutingFormat.RowBytes);
            batch.AddToken(seq, tokens[p], p, p, needsLogits: p == tokens.Length - 1, row);
        }
        backend.Forward(batch);
        return new Run(batch.LogitRow(0).ToArray(), batch.Routing[..(tokens.Length * backend.RoutingFormat.RowBytes)].ToArray());
    }

    private static ForwardBatch NewBatch(CpuBackend backend, int tokens) =>
        new(Math.Max(tokens, 64), 4, 8, backend.RoutingFormat, backend.Config.VocabSize);

    [Fact]
    public void Every_routing_row_holds_k_distinct_valid_experts()
    {
        using var backend = model.CreateBackend();
        var run = RunAlone(backend, PromptA);
        var format = backend.RoutingFormat;
        Assert.Equal(PromptA.Length * format.RowBytes, run.Routing.Length);
        Assert.False(format.ContainsSentinel(run.Routing));
        for (var row = 0; row < PromptA.Length; row++)
        {
            for (var layer = 0; layer < format.MoeLayerCount; layer++)
            {
                var experts = Enumerable.Range(0, format.TopK)
                    .Select(j => format.Get(run.Routing, (row * format.ElementsPerRow) + (layer * format.TopK) + j))
                    .ToArray();
                Assert.All(experts, e => Assert.InRange(e, 0, format.NumExperts - 1));
                Assert.Equal(format.TopK, experts.Distinct().Count());
            }
        }
    }

    [Fact]
    public void A_token_computes_the_same_bits_alone_chunked_or_batched_with_others()
    {
        using var alone = model.CreateBackend();
        var reference = RunAlone(alone, PromptA);

        using var backend = model.CreateBackend();
        var format = backend.RoutingFormat;
        var split = 7;
        var blocksA = new[] { 5, 2 };
        var blocksB = new[] { 9 };
        var routing = new byte[PromptA.Length * format.RowBytes];

        var first = NewBatch(backend, split);
        var a = first.AddSequence(blocksA);
        for (var p = 0; p < split; p++)
        {
            first.AddToken(a, PromptA[p], p, (blocksA[p / 16] * 16) + (p % 16), needsLogits: false);
        }
        backend.Forward(first);
        first.Routing[..(split * format.RowBytes)].CopyTo(routing);

        var second = NewBatch(backend, PromptA.Length);
        var b = second.AddSequence(blocksB);
        for (var p = 0; p < PromptB.Length; p++)
        {
            second.AddToken(b, PromptB[p], p, (blocksB[0] * 16) + p, needsLogits: p == PromptB.Length - 1);
        }
        var a2 = second.AddSequence(blocksA);
        for (var p = split; p < PromptA.Length; p++)
        {
            second.AddToken(a2, PromptA[p], p, (blocksA[p / 16] * 16) + (p % 16), needsLogits: p == PromptA.Length - 1);
        }
        backend.Forward(second);
        second.Routing.Slice(PromptB.Length * format.RowBytes, (PromptA.Length - split) * format.RowBytes).CopyTo(routing.AsSpan(split * format.RowBytes));

        Assert.Equal(reference.Routing, routing);
        Assert.Equal(reference.LastLogits, second.LogitRow(1).ToArray());
    }

    [Fact]
    public void Forcing_the_captured_rows_reproduces_the_logits_bit_for_bit()
    {
        using var backend = model.CreateBackend();
        var normal = RunAlone(backend, PromptA);
        var replayed = RunAlone(backend, PromptA, normal.Routing);
        Assert.Equal(normal.Routing, replayed.Routing);
        Assert.Equal(normal.LastLogits, replayed.LastLogits);
    }

    [Fact]
    public void Forcing_other_experts_changes_the_logits_and_the_captured_rows_equal_the_forced_ones()
    {
        using var backend = model.CreateBackend();
        var format = backend.RoutingFormat;
        var normal = RunAlone(backend, PromptA);
        var forced = new byte[normal.Routing.Length];
        for (var i = 0; i < forced.Length / format.ElementSize; i++)
        {
            format.Set(forced, i, (format.Get(normal.Routing, i) + 1) % format.NumExperts);
        }
        var run = RunAlone(backend, PromptA, forced);
        Assert.Equal(forced, run.Routing);
        Assert.NotEqual(normal.LastLogits, run.LastLogits);
    }

    [Fact]
    public void Forced_routing_naming_a_missing_expert_is_rejected()
    {
        using var backend = model.CreateBackend();
        var format = backend.RoutingFormat;
        var forced = new byte[PromptB.Length * format.RowBytes];
        forced.AsSpan().Fill(0);
        format.Set(forced, 1, format.NumExperts);
        Assert.Throws<ArgumentException>(() => RunAlone(backend, PromptB, forced));
    }

    [Fact]
    public void The_bf16_matrix_kernel_equals_the_fp32_kernel_bit_for_bit()
    {
        var random = new RouteReplay.Engine.SeededRandom(3);
        const int rows = 37, dim = 67, tokens = 3;
        var weight = Enumerable.Range(0, rows * dim)
            .Select(_ => BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits((float)(random.NextDouble() - 0.5)) & unchecked((int)0xFFFF0000)))
            .ToArray();
        var input = Enumerable.Range(0, tokens * dim).Select(_ => (float)random.NextDouble()).ToArray();
        var bf16 = Kernels.ToBf16IfLossless(weight)!;
        float[] expected = new float[tokens * rows], actual = new float[tokens * rows];
        Kernels.MatMul(weight, dim, rows, input, tokens, expected, 0, rows);
        Kernels.MatMulBf16(bf16, dim, rows, input, tokens, actual, 0, rows);
        Assert.Equal(expected, actual);
        weight[5] = 1.0000001f;
        Assert.Null(Kernels.ToBf16IfLossless(weight));
    }

    [Fact]
    public void Top_k_orders_by_probability_and_breaks_ties_to_the_lower_id()
    {
        Span<int> selected = stackalloc int[3];
        ExpertRouter.SelectTopK([0.1f, 0.3f, 0.2f, 0.3f, 0.05f], selected);
        Assert.Equal(new[] { 1, 3, 2 }, selected.ToArray());
    }
}
