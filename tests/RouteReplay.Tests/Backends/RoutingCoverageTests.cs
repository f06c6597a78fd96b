using System.Text.Json;
using RouteReplay.Backends;
using RouteReplay.Backends.Cpu;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;
using RouteReplay.Model.Tokenization;
using Xunit.Abstractions;

namespace RouteReplay.Tests.Backends;

/// <summary>The presets' random weights route non-degenerately: over a few hundred tokens every expert is chosen.</summary>
public sealed class RoutingCoverageTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("tiny")]
    [InlineData("small")]
    public void Every_expert_of_every_moe_layer_is_chosen_over_a_few_hundred_tokens(string preset)
    {
        var dir = Directory.CreateTempSubdirectory($"routereplay-{preset}-").FullName;
        try
        {
            ModelMaker.Make(ModelPresets.Get(preset), dir);
            var tokenizer = TextTokenizer.Load(dir);
            var corpus = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizer_corpus.json")))
                .RootElement.EnumerateArray().Select(e => e.GetString()!);
            var ids = tokenizer.Encode(string.Join("\n", corpus)).Take(400).ToArray();
            using var checkpoint = Checkpoint.Open(dir);
            using var backend = CpuBackend.Load(checkpoint, (ids.Length + 15) / 16, 16);
            var batch = new ForwardBatch(ids.Length, 1, backend.NumBlocks, backend.RoutingFormat, backend.Config.VocabSize);
            var seq = batch.AddSequence(Enumerable.Range(0, backend.NumBlocks).ToArray());
            for (var p = 0; p < ids.Length; p++)
            {
                batch.AddToken(seq, ids[p], p, p, needsLogits: p == ids.Length - 1);
            }
            backend.Forward(batch);

            var format = backend.RoutingFormat;
            for (var m = 0; m < format.MoeLayerCount; m++)
            {
                var counts = new int[format.NumExperts];
                for (var p = 0; p < ids.Length; p++)
                {
                    for (var j = 0; j < format.TopK; j++)
                    {
                        counts[format.Get(batch.RoutingRow(p), (m * format.TopK) + j)]++;
                    }
                }
                output.WriteLine($"{preset} MoE layer {m}: {ids.Length} tokens, least-chosen expert {counts.Min()} times, most {counts.Max()}");
                Assert.All(counts, c => Assert.True(c > 0));
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
