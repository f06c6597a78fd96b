using System.Globalization;
using System.Text;
using System.Text.Json;
using RouteReplay.Backends.Cuda;
using RouteReplay.Engine;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Cli.Bench;

/// <summary>The bench's figures: per run, per shape (means over rounds), the on/off ratios, rooflines and profiles.</summary>
internal sealed class BenchReport(
    string model,
    string? device,
    DeviceCeilings? ceilings,
    ModelConfig config,
    EngineOptions options,
    int promptTokens,
    int outputTokens,
    IReadOnlyList<DecodeRun> decodes,
    IReadOnlyList<PrefillRun> prefills,
    IReadOnlyList<KernelProfile> profiles)
{
    private sealed record DecodeShape(int Batch, bool Routing, double TokensPerSecond, double StepSeconds, DecodeRoofline Roofline, double? RooflineFraction, double DistinctExperts);

    private IEnumerable<DecodeShape> DecodeShapes() => decodes
        .GroupBy(d => (d.Batch, d.Routing))
        .OrderBy(g => g.Key.Batch).ThenByDescending(g => g.Key.Routing)
        .Select(g =>
        {
            var measured = decodes.Where(d => d.Batch == g.Key.Batch && d.Routing && !double.IsNaN(d.DistinctExpertsPerStep)).ToArray();
            var distinct = measured.Length > 0 ? measured.Average(d => d.DistinctExpertsPerStep) : ExpectedDistinctExperts(g.Key.Batch);
            var context = (long)g.Average(d => d.ContextTokensPerStep);
            var roofline = DecodeRoofline.For(config, distinct, context);
            var step = g.Average(d => d.StepSeconds);
            double? fraction = ceilings is { } c ? roofline.Seconds(c.BandwidthGigabytesPerSecond) / step : null;
            return new DecodeShape(g.Key.Batch, g.Key.Routing, g.Average(d => d.TokensPerSecond), step, roofline, fraction, distinct);
        });

    /// <summary>With no routing measured: the expected distinct experts of B tokens routed uniformly, over the MoE layers.</summary>
    private double ExpectedDistinctExperts(int batch)
    {
        var e = (double)config.NumExperts;
        return config.MoeLayers.Count * e * (1 - Math.Pow(1 - (config.NumExpertsPerTok / e), batch));
    }

    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("model", model);
            w.WriteString("device", device ?? "cpu");
            if (ceilings is { } c)
            {
                w.WriteStartObject("ceilings");
                w.WriteNumber("copy_gigabytes_per_s_read_plus_written", c.CopyGigabytesPerSecond);
                w.WriteNumber("read_gigabytes_per_s", c.ReadGigabytesPerSecond);
                w.WriteNumber("roofline_gigabytes_per_s", c.BandwidthGigabytesPerSecond);
                w.WriteNumber("bf16_gemm_8192_teraflops", c.GemmTeraflops);
                w.WriteEndObject();
            }
            w.WriteNumber("prompt_tokens", promptTokens);
            w.WriteNumber("output_tokens", outputTokens);
            w.WriteNumber("max_num_batched_tokens", options.MaxNumBatchedTokens);
            w.WriteStartArray("decode_runs");
            foreach (var d in decodes)
            {
                w.WriteStartObject();
                w.WriteNumber("batch", d.Batch);
                w.WriteBoolean("routing", d.Routing);
                w.WriteNumber("round", d.Round);
                w.WriteNumber("tokens_per_s", d.TokensPerSecond);
                w.WriteNumber("step_ms", d.StepSeconds * 1e3);
                w.WriteNumber("decode_steps", d.DecodeSteps);
                if (!double.IsNaN(d.DistinctExpertsPerStep))
                {
                    w.WriteNumber("distinct_experts_per_step", d.DistinctExpertsPerStep);
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("decode");
            foreach (var s in DecodeShapes())
            {
                w.WriteStartObject();
                w.WriteNumber("batch", s.Batch);
                w.WriteBoolean("routing", s.Routing);
                w.WriteNumber("tokens_per_s", s.TokensPerSecond);
                w.WriteNumber("step_ms", s.StepSeconds * 1e3);
                w.WriteNumber("roofline_bytes_weights", s.Roofline.WeightBytes);
                w.WriteNumber("roofline_bytes_experts", s.Roofline.ExpertBytes);
                w.WriteNumber("roofline_bytes_kv", s.Roofline.KvBytes);
                w.WriteNumber("distinct_experts_per_step", s.DistinctExperts);
                if (s.RooflineFraction is { } f && ceilings is { } bandwidth)
                {
                    w.WriteNumber("roofline_ms", s.Roofline.Seconds(bandwidth.BandwidthGigabytesPerSecond) * 1e3);
                    w.WriteNumber("fraction_of_roofline", f);
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("prefill_runs");
            foreach (var p in prefills)
            {
                w.WriteStartObject();
                w.WriteNumber("requests", p.Requests);
                w.WriteNumber("prompt_tokens", p.PromptTokens);
                w.WriteBoolean("routing", p.Routing);
                w.WriteNumber("round", p.Round);
                w.WriteNumber("tokens_per_s", p.TokensPerSecond);
                w.WriteNumber("seconds", p.Seconds);
                if (!double.IsNaN(p.MinExpertsUsedFraction))
                {
                    w.WriteNumber("min_fraction_of_experts_used_per_layer", p.MinExpertsUsedFraction);
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("capture_on_over_off");
            foreach (var (shape, ratio) in Ratios())
            {
                w.WriteStartObject();
                w.WriteString("shape", shape);
                w.WriteNumber("ratio", ratio);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("kernel_profiles");
            foreach (var profile in profiles)
            {
                w.WriteStartObject();
                w.WriteString("shape", profile.Shape);
                w.WriteNumber("steps", profile.Steps);
                w.WriteStartObject("milliseconds_per_step");
                foreach (var (name, ms) in profile.Classes)
                {
                    w.WriteNumber(name, ms);
                }
                w.WriteEndObject();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    public string ToTable()
    {
        var text = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        if (ceilings is { } c)
        {
            text.AppendLine(inv, $"ceilings: copy {c.CopyGigabytesPerSecond:F0} GB/s (read+written), read {c.ReadGigabytesPerSecond:F0} GB/s, bf16 GEMM 8192^3 {c.GemmTeraflops:F0} TFLOP/s; rooflines use {c.BandwidthGigabytesPerSecond:F0} GB/s");
        }
        text.AppendLine(inv, $"{"shape",-28} {"routing",-8} {"tokens/s",10} {"step ms",9} {"roofline ms",12} {"of roofline",12}");
        foreach (var s in DecodeShapes())
        {
            var roofline = ceilings is { } cc ? (s.Roofline.Seconds(cc.BandwidthGigabytesPerSecond) * 1e3).ToString("F3", inv) : "-";
            var fraction = s.RooflineFraction is { } f ? f.ToString("P1", inv) : "-";
            text.AppendLine(inv, $"{$"decode batch {s.Batch} ({promptTokens}+{outputTokens})",-28} {(s.Routing ? "on" : "off"),-8} {s.TokensPerSecond,10:F1} {s.StepSeconds * 1e3,9:F2} {roofline,12} {fraction,12}");
        }
        foreach (var g in prefills.GroupBy(p => p.Routing).OrderByDescending(g => g.Key))
        {
            var first = g.First();
            text.AppendLine(inv, $"{$"prefill {first.Requests} x {first.PromptTokens}",-28} {(g.Key ? "on" : "off"),-8} {g.Average(p => p.TokensPerSecond),10:F1} {g.Average(p => p.Seconds) * 1e3,9:F1} {"",12} {"",12}");
        }
        foreach (var (shape, ratio) in Ratios())
        {
            text.AppendLine(inv, $"capture on/off, {shape}: {ratio:F3}");
        }
        foreach (var profile in profiles)
        {
            var total = profile.Classes.Sum(p => p.MillisecondsPerStep);
            text.AppendLine(inv, $"kernel time per step, {profile.Shape} ({profile.Steps} steps, {total:F2} ms in kernels and copies):");
            foreach (var (name, ms) in profile.Classes.Where(p => p.MillisecondsPerStep > 0).OrderByDescending(p => p.MillisecondsPerStep))
            {
                text.AppendLine(inv, $"  {name,-16} {ms,9:F3} ms {ms / total,7:P1}");
            }
        }
        return text.ToString().TrimEnd();
    }

    private IEnumerable<(string Shape, double Ratio)> Ratios()
    {
        foreach (var g in decodes.GroupBy(d => d.Batch).OrderBy(g => g.Key))
        {
            var on = g.Where(d => d.Routing).ToArray();
            var off = g.Where(d => !d.Routing).ToArray();
            if (on.Length > 0 && off.Length > 0)
            {
                yield return ($"decode batch {g.Key}", on.Average(d => d.TokensPerSecond) / off.Average(d => d.TokensPerSecond));
            }
        }
        var prefillOn = prefills.Where(p => p.Routing).ToArray();
        var prefillOff = prefills.Where(p => !p.Routing).ToArray();
        if (prefillOn.Length > 0 && prefillOff.Length > 0)
        {
            yield return ("prefill", prefillOn.Average(p => p.TokensPerSecond) / prefillOff.Average(p => p.TokensPerSecond));
        }
    }
}
