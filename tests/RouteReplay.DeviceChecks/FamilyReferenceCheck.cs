using System.Text.Json;
using RouteReplay.Backends;
using RouteReplay.Backends.Cpu;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.DeviceChecks;

/// <summary>
/// The CPU forward of each family against transformers' fp32 forward on the tiny checkpoints transformers itself
/// writes (scripts/hf_family_fixtures.py: a folder per family with the checkpoint and reference.json). Every token is
/// fed teacher-forced; the comparison covers the top-5 logits, the greedy continuation, and every routing decision
/// (as a set of experts: transformers does not always sort them). A routing or greedy difference passes only at a
/// near-tie: our k-th and (k+1)-th selection scores (or the reference's two best logits) within
/// <see cref="TieTolerance"/>; each is counted.
/// </summary>
public static class FamilyReferenceCheck
{
    public const float LogitTolerance = 2e-3f;
    public const float TieTolerance = 1e-3f;

    /// <summary>One result per family folder under <paramref name="fixtures"/>.</summary>
    public static IEnumerable<CheckResult> Run(string fixtures) =>
        Directory.GetDirectories(fixtures)
            .Where(dir => File.Exists(Path.Combine(dir, "reference.json")))
            .Order(StringComparer.Ordinal)
            .Select(Compare);

    public static CheckResult Compare(string dir)
    {
        var reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "reference.json"))).RootElement;
        var name = $"family-{reference.GetProperty("name").GetString()}";
        var problems = new List<string>();
        foreach (var list in new[] { "missing_keys", "unexpected_keys", "changed_on_reload" })
        {
            if (reference.GetProperty(list).GetArrayLength() > 0)
            {
                problems.Add($"transformers reported {list}: {reference.GetProperty(list)}");
            }
        }
        var cases = reference.GetProperty("cases").EnumerateArray().ToArray();
        var longest = cases.Max(c => c.GetProperty("token_ids").GetArrayLength());
        using var checkpoint = Checkpoint.Open(dir);
        using var backend = CpuBackend.Load(checkpoint, (longest + 15) / 16, 16);
        var format = backend.RoutingFormat;
        var moeLayers = reference.GetProperty("moe_layers").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        if (!moeLayers.SequenceEqual(format.MoeLayers))
        {
            problems.Add($"MoE layers [{string.Join(',', format.MoeLayers)}], reference [{string.Join(',', moeLayers)}]");
        }
        var selection = new Dictionary<(int Moe, int Token), float[]>();
        backend.RouterObserver = (moe, token, scores) => selection[(moe, token)] = scores;

        var maxLogitDiff = 0f;
        int decisions = 0, routingTies = 0, greedy = 0, greedyTies = 0;
        foreach (var c in cases)
        {
            var ids = c.GetProperty("token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var promptLength = c.GetProperty("prompt_length").GetInt32();
            selection.Clear();
            using var batch = new ForwardBatch(ids.Length, 1, backend.NumBlocks, format, backend.Config.VocabSize, ids.Length);
            var seq = batch.AddSequence(Enumerable.Range(0, backend.NumBlocks).ToArray());
            for (var p = 0; p < ids.Length; p++)
            {
                batch.AddToken(seq, ids[p], p, p, needsLogits: true);
            }
            backend.Forward(batch);

            var topIds = c.GetProperty("top_logit_ids").EnumerateArray().ToArray();
            var topValues = c.GetProperty("top_logit_values").EnumerateArray().ToArray();
            for (var p = 0; p < ids.Length; p++)
            {
                var logits = batch.LogitRow(p);
                var refIds = topIds[p].EnumerateArray().Select(e => e.GetInt32()).ToArray();
                var refValues = topValues[p].EnumerateArray().Select(e => e.GetSingle()).ToArray();
                for (var j = 0; j < refIds.Length; j++)
                {
                    maxLogitDiff = Math.Max(maxLogitDiff, Math.Abs(logits[refIds[j]] - refValues[j]));
                }
                if (p >= promptLength - 1 && p + 1 < ids.Length)
                {
                    greedy++;
                    if (ArgMax(logits) != ids[p + 1])
                    {
                        if (refValues[0] - refValues[1] < TieTolerance)
                        {
                            greedyTies++;
                        }
                        else
                        {
                            problems.Add($"greedy token at position {p}: ours {ArgMax(logits)}, reference {ids[p + 1]}");
                        }
                    }
                }
            }

            var router = c.GetProperty("router");
            for (var m = 0; m < moeLayers.Length; m++)
            {
                var record = router.GetProperty(moeLayers[m].ToString(System.Globalization.CultureInfo.InvariantCulture));
                var indices = record.TryGetProperty("indices", out var found) ? found.EnumerateArray().ToArray() : null;
                var refLogits = record.GetProperty("logits").EnumerateArray().ToArray();
                for (var p = 0; p < ids.Length; p++)
                {
                    decisions++;
                    var expected = indices is not null
                        ? indices[p].EnumerateArray().Select(e => e.GetInt32()).ToHashSet()
                        : TopK(refLogits[p].EnumerateArray().Select(e => e.GetSingle()).ToArray(), format.TopK);
                    var ours = Enumerable.Range(0, format.TopK).Select(j => format.Get(batch.RoutingRow(p), (m * format.TopK) + j)).ToHashSet();
                    if (ours.SetEquals(expected))
                    {
                        continue;
                    }
                    var scores = selection[(m, p)].OrderDescending().ToArray();
                    if (scores[format.TopK - 1] - scores[format.TopK] < TieTolerance)
                    {
                        routingTies++;
                    }
                    else
                    {
                        problems.Add($"routing at position {p}, layer {moeLayers[m]}: ours [{string.Join(',', ours)}], reference [{string.Join(',', expected)}]");
                    }
                }
            }
        }
        if (maxLogitDiff > LogitTolerance)
        {
            problems.Add($"max |logit diff| {maxLogitDiff:E2} above {LogitTolerance:E0}");
        }
        var summary = $"{reference.GetProperty("model_type").GetString()}: {decisions} routing decisions, {routingTies} differing at near-ties; " +
            $"{greedy} greedy tokens, {greedyTies} differing at near-ties; max |logit diff| {maxLogitDiff:E2}" +
            (problems.Count > 0 ? $"; {problems.Count} problems, first: {problems[0]}" : "");
        return new CheckResult(name, problems.Count == 0, summary, writer =>
        {
            writer.WriteNumber("routing_decisions", decisions);
            writer.WriteNumber("routing_near_tie_differences", routingTies);
            writer.WriteNumber("greedy_tokens", greedy);
            writer.WriteNumber("greedy_near_tie_differences", greedyTies);
            writer.WriteNumber("max_logit_diff", maxLogitDiff);
            writer.WriteStartArray("problems");
            foreach (var problem in problems.Take(50))
            {
                writer.WriteStringValue(problem);
            }
            writer.WriteEndArray();
        });
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
            {
                best = i;
            }
        }
        return best;
    }

    private static HashSet<int> TopK(float[] values, int k) =>
        Enumerable.Range(0, values.Length).OrderByDescending(i => values[i]).ThenBy(i => i).Take(k).ToHashSet();
}
