using System.Text.Json;
using System.Text.Json.Nodes;
using RouteReplay.Backends;
using RouteReplay.Backends.Cpu;
using RouteReplay.DeviceChecks;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Presets;

namespace RouteReplay.Tests.Families;

/// <summary>
/// The check that compares the families with transformers (run on the GPU machine, where transformers is) passes on
/// a reference that agrees with the engine and fails on one whose routing or greedy token differs away from a tie.
/// </summary>
public sealed class FamilyReferenceCheckTests
{
    [Theory]
    [InlineData("gpt-oss-tiny")]
    [InlineData("deepseek-v3-tiny")]
    public void Passes_on_agreement_and_fails_on_a_changed_expert_or_token(string preset)
    {
        var dir = Directory.CreateTempSubdirectory($"routereplay-{preset}-").FullName;
        try
        {
            ModelMaker.Make(ModelPresets.Get(preset), dir);
            var reference = ReferenceFromEngine(dir, preset);
            File.WriteAllText(Path.Combine(dir, "reference.json"), reference.ToJsonString());
            var agreed = FamilyReferenceCheck.Compare(dir);
            Assert.True(agreed.Passed, agreed.Summary);

            var routing = reference["cases"]![0]!["router"]!.AsObject().First().Value!["indices"]![2]!.AsArray();
            var first = routing[0]!.GetValue<int>();
            var unused = Enumerable.Range(0, ModelPresets.Get(preset).Config.NumExperts).First(e => routing.All(x => x!.GetValue<int>() != e));
            routing[0] = unused;
            File.WriteAllText(Path.Combine(dir, "reference.json"), reference.ToJsonString());
            var changedRouting = FamilyReferenceCheck.Compare(dir);
            Assert.False(changedRouting.Passed, changedRouting.Summary);
            Assert.Contains("routing at position 2", changedRouting.Summary);

            routing[0] = first;
            var tokens = reference["cases"]![0]!["token_ids"]!.AsArray();
            tokens[^1] = (tokens[^1]!.GetValue<int>() + 1) % 1000;
            File.WriteAllText(Path.Combine(dir, "reference.json"), reference.ToJsonString());
            Assert.False(FamilyReferenceCheck.Compare(dir).Passed);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>A reference.json as the fixture script writes it, from the engine's own forward: 6 prompt tokens, 3 greedy.</summary>
    private static JsonObject ReferenceFromEngine(string dir, string preset)
    {
        using var checkpoint = Checkpoint.Open(dir);
        using var backend = CpuBackend.Load(checkpoint, 1, 16);
        var ids = new List<int> { 11, 220, 3_000, 42, 9_001, 77 };
        float[][] logits = [];
        using var batch = new ForwardBatch(16, 1, 1, backend.RoutingFormat, backend.Config.VocabSize, 16);
        void Run()
        {
            batch.Clear();
            var seq = batch.AddSequence([0]);
            for (var p = 0; p < ids.Count; p++)
            {
                batch.AddToken(seq, ids[p], p, p, needsLogits: true);
            }
            backend.Forward(batch);
            logits = Enumerable.Range(0, ids.Count).Select(p => batch.LogitRow(p).ToArray()).ToArray();
        }
        for (var step = 0; step < 3; step++)
        {
            Run();
            ids.Add(Array.IndexOf(logits[^1], logits[^1].Max()));
        }
        Run();
        var format = backend.RoutingFormat;
        var router = new JsonObject();
        for (var m = 0; m < format.MoeLayers.Count; m++)
        {
            var indices = new JsonArray();
            var routerLogits = new JsonArray();
            for (var p = 0; p < ids.Count; p++)
            {
                indices.Add(new JsonArray(Enumerable.Range(0, format.TopK).Select(j => (JsonNode)format.Get(batch.RoutingRow(p), (m * format.TopK) + j)).ToArray()));
                routerLogits.Add(new JsonArray(Enumerable.Range(0, format.NumExperts).Select(_ => (JsonNode)0.0).ToArray()));
            }
            router[format.MoeLayers[m].ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonObject { ["indices"] = indices, ["logits"] = routerLogits };
        }
        var top = logits.Select(row => Enumerable.Range(0, row.Length).OrderByDescending(i => row[i]).Take(5).ToArray()).ToArray();
        return new JsonObject
        {
            ["name"] = preset,
            ["model_type"] = backend.Config.ModelType,
            ["moe_layers"] = JsonSerializer.SerializeToNode(format.MoeLayers.ToArray()),
            ["missing_keys"] = new JsonArray(),
            ["unexpected_keys"] = new JsonArray(),
            ["changed_on_reload"] = new JsonArray(),
            ["cases"] = new JsonArray(new JsonObject
            {
                ["token_ids"] = JsonSerializer.SerializeToNode(ids.ToArray()),
                ["prompt_length"] = 6,
                ["top_logit_ids"] = JsonSerializer.SerializeToNode(top),
                ["top_logit_values"] = JsonSerializer.SerializeToNode(top.Select((row, p) => row.Select(i => logits[p][i]).ToArray()).ToArray()),
                ["router"] = router,
            }),
        };
    }
}
