using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Families;

/// <summary>
/// For every family, prefill/decode disaggregation on batch-variant backends (two engines, blocks handed over as the
/// transfer server seals them): the prompt rows the decode engine returns are the rows the prefill engine computed,
/// so the family's KV payload and routing cross together.
/// </summary>
public sealed class FamilyTransferTests(FamilyModelsFixture models) : IClassFixture<FamilyModelsFixture>
{
    public static TheoryData<string> Presets => [.. FamilyModelsFixture.Presets];

    [Theory]
    [MemberData(nameof(Presets))]
    public void Prompt_rows_after_a_transfer_are_the_prefill_engines(string preset)
    {
        var (decode, decodeBackend, decodeRows) = EngineRunner.CreateBatchVariant(
            models.DirectoryOf(preset), new EngineOptions { NumBlocks = 256, MaxNumSeqs = 16, MaxNumBatchedTokens = 64, SwapSpaceGiB = 0 });
        var (prefill, prefillBackend, prefillRows) = EngineRunner.CreateBatchVariant(
            models.DirectoryOf(preset), new EngineOptions { NumBlocks = 256, MaxNumSeqs = 8, MaxNumBatchedTokens = 32, SwapSpaceGiB = 0 });
        using var _ = decode;
        using var __ = prefill;
        var source = new InProcessPrefill(prefill);
        var workload = SharedPrefixWorkload.Build(models.Tokenizer, greedy: false, firstTurns: null);
        var runner = new EngineRunner();
        foreach (var request in workload)
        {
            decode.AddRequest(request with { RemotePrefill = new RemotePrefill([source], PrefillFallback.Error) }, runner);
        }
        InProcessPrefill.RunToCompletion(decode, [source]);

        Assert.Equal(workload.Count, decode.Stats.RemotePrefills);
        Assert.Equal(0, decode.Stats.RemotePrefillFailures);
        Assert.True(prefillBackend.ShiftedRows > 0 && decodeBackend.ShiftedRows > 0);
        decodeRows.AssertUnchanged(runner.Results.Values);
        foreach (var request in workload)
        {
            var prefillId = source.PrefillRequestIds.Last(id => id.StartsWith($"pd:{request.RequestId}:", StringComparison.Ordinal));
            var routing = runner.Results[request.RequestId].Choices[0].Routing!;
            var rows = request.PromptTokenIds.Count - routing.Start;
            Assert.Equal(prefillRows.Rows(prefillId, 0, routing.Start, rows), routing.Data.AsSpan(0, rows * prefillRows.Format.RowBytes).ToArray());
        }
    }
}
