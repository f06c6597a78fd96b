using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Disaggregation;

/// <summary>
/// The engine seams of a prefill/decode split, two engines in one process and no sockets: a decode engine imports
/// every prompt's blocks (KV, routing and the test channel) from a prefill engine and decodes; tokens, routing and
/// channel rows equal a plain one-request-at-a-time run, cached prefixes are not sent again, and every failure ends
/// with both pools idle.
/// </summary>
public sealed class PrefillDecodeEngineTests(PdEngineFixture fixture) : IClassFixture<PdEngineFixture>
{
    private TinyModelFixture Model => fixture.Model;

    private static readonly EngineOptions DecodeOptions = new() { NumBlocks = 256, MaxNumSeqs = 16, MaxNumBatchedTokens = 64, SwapSpaceGiB = 0 };
    private static readonly EngineOptions PrefillOptions = new() { NumBlocks = 256, MaxNumSeqs = 8, MaxNumBatchedTokens = 32, SwapSpaceGiB = 0 };

    private static Dictionary<string, RequestResult> Run(LlmEngine decode, IEnumerable<EngineRequest> workload, PrefillFallback fallback, params InProcessPrefill[] sources)
    {
        var runner = new EngineRunner();
        foreach (var request in workload)
        {
            decode.AddRequest(request with { RemotePrefill = new RemotePrefill(sources, fallback) }, runner);
        }
        InProcessPrefill.RunToCompletion(decode, sources);
        return runner.Results;
    }

    private static void AssertIdle(params LlmEngine[] engines)
    {
        foreach (var engine in engines)
        {
            Assert.Equal(0, engine.Pool.UsedBlockCount);
            Assert.Equal(0, engine.ImportingRequests);
            Assert.Equal(0, engine.HoldingExports);
            Assert.False(engine.HasUnfinishedRequests);
        }
    }

    [Fact]
    public void The_seeded_shared_prefix_workload_through_a_prefill_engine_is_identical_to_one_request_at_a_time()
    {
        var (workload, reference) = fixture.WithSecondTurns(greedy: false);
        using var decode = EngineRunner.Create(Model, DecodeOptions);
        using var prefill = EngineRunner.Create(Model, PrefillOptions);
        var results = Run(decode, workload, PrefillFallback.Error, new InProcessPrefill(prefill));

        SharedPrefixWorkload.AssertIdentical(workload, reference, results);
        Assert.Equal(workload.Count, decode.Stats.RemotePrefills);
        Assert.Equal(0, decode.Stats.RemotePrefillFailures);
        Assert.Equal(prefill.Stats.ExportedBlocks, decode.Stats.ImportedBlocks);
        Assert.True(decode.Stats.ImportedBlocks > workload.Count, "every prompt's blocks are imported");
        Assert.Equal(0, decode.Stats.PrefillFallbacksLocal);
        AssertIdle(decode, prefill);
    }

    [Fact]
    public void A_decode_engine_that_caches_the_leading_blocks_asks_only_for_the_rest()
    {
        var (workload, reference) = fixture.WithSecondTurns(greedy: false);
        using var decode = EngineRunner.Create(Model, DecodeOptions);
        using var prefill = EngineRunner.Create(Model, PrefillOptions);
        var source = new InProcessPrefill(prefill);
        SharedPrefixWorkload.AssertIdentical(workload, reference, Run(decode, workload, PrefillFallback.Error, source));
        var firstPass = prefill.Stats.ExportedBlocks;

        var again = Run(decode, workload, PrefillFallback.Error, source);

        SharedPrefixWorkload.AssertIdentical(workload, reference, again);
        var secondPass = prefill.Stats.ExportedBlocks - firstPass;
        var expected = workload.Sum(r => ((r.PromptTokenIds.Count - 1) / 16) + r.N);
        Assert.True(decode.Stats.ImportKeptBlocks > 0);
        Assert.Equal(decode.Stats.ImportKeptBlocks, prefill.Stats.ExportKeptBlocks);
        Assert.True(secondPass < firstPass, $"{secondPass} blocks sent the second time, {firstPass} the first");
        Assert.Equal(expected * 2, firstPass + secondPass + decode.Stats.ImportKeptBlocks);
        AssertIdle(decode, prefill);
    }

    [Fact]
    public void On_batch_variant_backends_the_prompt_rows_a_decode_engine_returns_are_the_rows_the_prefill_engine_computed()
    {
        var (decode, decodeBackend, decodeRows) = EngineRunner.CreateBatchVariant(Model, DecodeOptions);
        var (prefill, prefillBackend, prefillRows) = EngineRunner.CreateBatchVariant(Model, PrefillOptions);
        using var _ = decode;
        using var __ = prefill;
        var source = new InProcessPrefill(prefill);
        var (workload, plain) = fixture.FirstTurns(greedy: false);
        var results = Run(decode, workload, PrefillFallback.Error, source);

        Assert.Equal(workload.Count, decode.Stats.RemotePrefills);
        AssertPromptRowsArePrefills(workload, results, source, prefillRows);
        decodeRows.AssertUnchanged(results.Values);
        Assert.True(prefillBackend.ShiftedRows > 0 && decodeBackend.ShiftedRows > 0);
        Assert.Contains(workload, r => !plain[r.RequestId].Choices[0].Routing!.Data.AsSpan(0, 16).SequenceEqual(results[r.RequestId].Choices[0].Routing!.Data.AsSpan(0, 16)));

        // The decode engine now caches those prompts' blocks. A flushed prefill engine computes the shared system
        // prompt again beside another request, so its rows differ: the held blocks it disagrees with are sent
        // anyway and replace the cached ones, and the rows returned are again the prefill engine's.
        prefill.FlushCache();
        prefill.AddRequest(new EngineRequest { RequestId = "beside", PromptTokenIds = [.. Enumerable.Range(100, 11)], Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 4 } }, new EngineRunner());
        var second = workload.Take(2).Select(r => r with { RequestId = r.RequestId + "-again" }).ToList();
        var imports = source.Imports.Count;
        var again = Run(decode, second, PrefillFallback.Error, source);

        var replayed = source.Imports.Skip(imports).ToList();
        Assert.Contains(replayed, i => i.HeldBlocks > 0 && i.KeptBlocks < i.HeldBlocks);
        AssertPromptRowsArePrefills(second, again, source, prefillRows);
        AssertIdle(decode, prefill);
    }

    private static void AssertPromptRowsArePrefills(IEnumerable<EngineRequest> workload, Dictionary<string, RequestResult> results, InProcessPrefill source, FirstComputedRows prefillRows)
    {
        foreach (var request in workload)
        {
            var prefillId = source.PrefillRequestIds.Last(id => id.StartsWith($"pd:{request.RequestId}:", StringComparison.Ordinal));
            var prompt = request.PromptTokenIds.Count;
            for (var c = 0; c < request.N; c++)
            {
                var routing = results[request.RequestId].Choices[c].Routing!;
                var rows = prompt - routing.Start;
                var expected = prefillRows.Rows(prefillId, c, routing.Start, rows);
                Assert.Equal(expected, routing.Data.AsSpan(0, rows * prefillRows.Format.RowBytes).ToArray());
            }
        }
    }

    public static TheoryData<PrefillFallback> Fallbacks => new() { PrefillFallback.Local, PrefillFallback.Error };

    [Theory]
    [MemberData(nameof(Fallbacks))]
    public void A_source_that_drops_mid_transfer_falls_back_or_fails_and_leaks_no_block(PrefillFallback fallback)
    {
        var (workload, reference) = fixture.FirstTurns(greedy: false);
        using var decode = EngineRunner.Create(Model, DecodeOptions);
        using var prefill = EngineRunner.Create(Model, PrefillOptions);
        var results = Run(decode, workload, fallback, new InProcessPrefill(prefill) { FailAfterItems = 2 });

        Assert.Equal(workload.Count, decode.Stats.RemotePrefillFailures);
        if (fallback == PrefillFallback.Local)
        {
            SharedPrefixWorkload.AssertIdentical(workload, reference, results);
            Assert.Equal(workload.Count, decode.Stats.PrefillFallbacksLocal);
        }
        else
        {
            Assert.All(results.Values, r => Assert.IsType<RemotePrefillException>(r.Error));
            Assert.Contains("the connection dropped after 2 items", results.Values.First().Error!.Message);
            Assert.Equal(workload.Count, decode.Stats.PrefillFallbacksError);
        }
        AssertIdle(decode, prefill);
    }

    [Fact]
    public void A_failed_source_is_retried_on_the_next_one_and_a_corrupt_block_is_never_used()
    {
        var (workload, reference) = fixture.FirstTurns(greedy: false);
        using var decode = EngineRunner.Create(Model, DecodeOptions);
        using var dropping = EngineRunner.Create(Model, PrefillOptions);
        using var corrupting = EngineRunner.Create(Model, PrefillOptions);
        using var good = EngineRunner.Create(Model, PrefillOptions);
        var corruptingSource = new InProcessPrefill(corrupting, "corrupting") { CorruptFirstBlock = true };
        var results = Run(
            decode,
            workload,
            PrefillFallback.Error,
            new InProcessPrefill(dropping, "dropping") { FailAfterItems = 1 },
            corruptingSource,
            new InProcessPrefill(good, "good"));

        SharedPrefixWorkload.AssertIdentical(workload, reference, results);
        var rejected = corruptingSource.Failures.Count(e => e is InvalidDataException && e.Message.Contains("failed verification: ChecksumMismatch", StringComparison.Ordinal));
        Assert.True(rejected > 0, "some block was corrupted and rejected");
        Assert.Equal(corruptingSource.Failures.Count, rejected);
        Assert.Equal(workload.Count + rejected, decode.Stats.PrefillRetries);
        Assert.Equal(workload.Count, decode.Stats.RemotePrefills);
        AssertIdle(decode, dropping, corrupting, good);
    }

    [Fact]
    public void Aborting_a_request_while_its_blocks_arrive_frees_them_on_both_engines()
    {
        using var decode = EngineRunner.Create(Model, DecodeOptions);
        using var prefill = EngineRunner.Create(Model, PrefillOptions);
        var source = new InProcessPrefill(prefill);
        var runner = new EngineRunner();
        var prompt = Model.Tokenizer.Encode(string.Concat(Enumerable.Repeat("experts route every token of a long prompt ", 20)));
        var handle = decode.AddRequest(new EngineRequest { RequestId = "long", PromptTokenIds = prompt, N = 2, Sampling = new SamplingParams { MaxTokens = 8 }, RemotePrefill = new RemotePrefill([source], PrefillFallback.Error) }, runner);
        decode.Step();
        Assert.Equal(1, decode.ImportingRequests);
        prefill.Step();
        prefill.Step();
        source.Pump();
        decode.Step();
        Assert.True(decode.Stats.ImportedBlocks > 0, "some blocks arrived before the abort");
        Assert.True(decode.Pool.UsedBlockCount > 0);

        Assert.True(decode.Abort(handle));
        Assert.True(source.Imports[0].Cancellation.IsCancellationRequested);
        source.Pump();

        Assert.Equal(FinishReason.Abort, runner.Results["long"].Choices[0].FinishReason);
        Assert.Null(runner.Results["long"].Choices[0].Routing);
        AssertIdle(decode, prefill);
    }

    [Fact]
    public void Releasing_an_export_while_its_request_computes_aborts_the_request_and_frees_every_block()
    {
        using var prefill = EngineRunner.Create(Model, PrefillOptions);
        var export = new BlockExport(0, []);
        var runner = new EngineRunner();
        var prompt = Model.Tokenizer.Encode(string.Concat(Enumerable.Repeat("a prompt long enough for several chunks ", 12)));
        prefill.AddRequest(new EngineRequest { RequestId = "exported", PromptTokenIds = prompt, N = 2, ReturnRouting = false, PrefillExport = export }, runner);
        prefill.Step();
        prefill.Step();
        Assert.True(prefill.Pool.UsedBlockCount > 0);

        prefill.ReleaseExport(export);

        Assert.Equal(FinishReason.Abort, runner.Results["exported"].Choices[0].FinishReason);
        var items = new List<ExportItem>();
        while (export.Items.TryRead(out var item))
        {
            items.Add(item);
            (item as ExportPayload)?.Block.Dispose();
        }
        Assert.IsType<ExportAgreed>(items[0]);
        Assert.Contains(items, i => i is ExportBlock);
        Assert.IsType<ExportFailed>(items[^1]);
        AssertIdle(prefill);
    }

    [Theory]
    [InlineData(2, 256)]
    [InlineData(16, 4)]
    public void A_request_too_wide_to_import_at_once_is_computed_locally(int maxNumSeqs, int numBlocks)
    {
        using var decode = EngineRunner.Create(Model, DecodeOptions with { MaxNumSeqs = maxNumSeqs, NumBlocks = numBlocks });
        using var prefill = EngineRunner.Create(Model, PrefillOptions);
        var prompt = Model.Tokenizer.Encode(string.Concat(Enumerable.Repeat("Three endings, please. ", 8))).Take(40).ToArray();
        var request = new EngineRequest { RequestId = "wide", PromptTokenIds = prompt, N = 3, Sampling = new SamplingParams { Seed = 5, MaxTokens = 6 } };
        var reference = EngineRunner.OneAtATime(Model, [request]);
        var results = Run(decode, [request], PrefillFallback.Error, new InProcessPrefill(prefill));

        Assert.Equal(reference["wide"].Choices.Select(c => c.TokenIds), results["wide"].Choices.Select(c => c.TokenIds));
        Assert.Equal(reference["wide"].Choices.Select(c => c.Routing!.Data), results["wide"].Choices.Select(c => c.Routing!.Data));
        Assert.Equal(0, decode.Stats.RemotePrefills);
        Assert.Equal(1, decode.Stats.PrefillFallbacksLocal);
        AssertIdle(decode, prefill);
    }
}

/// <summary>The model and the shared-prefix workloads with their one-at-a-time answers, made once for the class.</summary>
public sealed class PdEngineFixture : IDisposable
{
    public TinyModelFixture Model { get; } = new();

    public (List<EngineRequest> Workload, Dictionary<string, RequestResult> Reference) FirstTurns(bool greedy) => Get(greedy, secondTurns: false);

    public (List<EngineRequest> Workload, Dictionary<string, RequestResult> Reference) WithSecondTurns(bool greedy) => Get(greedy, secondTurns: true);

    private (List<EngineRequest>, Dictionary<string, RequestResult>) Get(bool greedy, bool secondTurns) => SharedPrefixWorkload.WithReference(Model, greedy, secondTurns);

    public void Dispose() => Model.Dispose();
}
