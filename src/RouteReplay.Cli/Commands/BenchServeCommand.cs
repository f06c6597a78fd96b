using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace RouteReplay.Cli.Commands;

/// <summary>
/// <c>routereplay bench-serve</c>: a load generator against a running server. Streams completions from C concurrent
/// clients and reports requests/s, time to first token, time per output token and token throughput, once with
/// <c>return_routed_experts</c> off and once on, in one run.
/// </summary>
internal static class BenchServeCommand
{
    private sealed record Sample(double TtftSeconds, double TotalSeconds, int OutputTokens, long RoutingChars, bool Ok);

    private sealed record Phase(string Name, bool Routing, double WallSeconds, List<Sample> Samples);

    private static readonly Dictionary<string, bool[]> Phases = new()
    {
        ["both"] = [false, true],
        ["off"] = [false],
        ["on"] = [true],
    };

    public static Command Create()
    {
        var url = new Option<string>("--url") { Description = "Server base URL.", DefaultValueFactory = _ => "http://127.0.0.1:8000" };
        var concurrency = Flags.Int("--concurrency", "Requests in flight at once.", 8);
        var requests = Flags.Int("--requests", "Requests per phase (routing off, then on).", 64);
        var maxTokens = Flags.Int("--max-tokens", "Tokens generated per request (end-of-sequence ignored).", 64);
        var promptWords = Flags.Int("--prompt-words", "Words in each prompt (each request's prompt is distinct).", 32);
        var routing = Flags.Choice("--routing", "Phases to run: both, off or on.", "both", Phases.Keys.ToDictionary(k => k));
        var warmup = Flags.OptionalInt("--warmup", "Requests sent before measuring (default: 4 x concurrency).");
        var rounds = Flags.Int("--rounds", "Rounds of the phases, alternating their order, each of --requests requests per phase; figures add up the rounds.", 2);
        var apiKey = new Option<string?>("--api-key") { Description = "Bearer key, when the server needs one." };
        var jsonOut = new Option<FileInfo?>("--json-out") { Description = "Also write the figures as JSON." };
        var timeout = Flags.Double("--timeout-seconds", "Give up on a request after this long.", 600);
        var command = new Command("bench-serve", "Load-test a running server: requests/s, TTFT p50/p99, time per output token, routing on vs off.")
        {
            url, concurrency, requests, maxTokens, promptWords, routing, warmup, rounds, apiKey, jsonOut, timeout,
        };
        command.SetAction(parse =>
        {
            var c = parse.GetValue(concurrency);
            var n = parse.GetValue(requests);
            var tokens = parse.GetValue(maxTokens);
            var words = parse.GetValue(promptWords);
            var phases = Phases[parse.GetValue(routing)!];
            Require(c is >= 1 and <= 4096, "concurrency", $"must be in 1..4096, got {c}");
            Require(n is >= 1 and <= 1_000_000, "requests", $"must be in 1..1000000, got {n}");
            Require(tokens >= 1, "max-tokens", $"must be >= 1, got {tokens}");
            Require(words >= 1, "prompt-words", $"must be >= 1, got {words}");
            var roundCount = parse.GetValue(rounds);
            Require(roundCount is >= 1 and <= 1000, "rounds", $"must be in 1..1000, got {roundCount}");
            var warmupCount = parse.GetValue(warmup) ?? 4 * c;
            Require(warmupCount >= 0, "warmup", $"must be >= 0, got {warmupCount}");
            var timeoutSeconds = parse.GetValue(timeout);
            Require(double.IsFinite(timeoutSeconds) && timeoutSeconds is > 0 and <= 86_400, "timeout-seconds", $"must be in (0, 86400], got {timeoutSeconds}");
            if (!Uri.TryCreate(parse.GetValue(url), UriKind.Absolute, out var baseUri) || baseUri.Scheme is not ("http" or "https"))
            {
                throw new ArgumentException($"--url must be an absolute http:// or https:// URL, got '{parse.GetValue(url)}'", "url");
            }
            OutputPaths.CheckFile(parse.GetValue(jsonOut)?.FullName, "--json-out");
            using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = c, PooledConnectionLifetime = TimeSpan.FromMinutes(10) })
            {
                BaseAddress = baseUri,
                Timeout = TimeSpan.FromSeconds(timeoutSeconds),
            };
            if (parse.GetValue(apiKey) is { } key)
            {
                http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
            }
            var model = ModelName(http);
            Console.Error.WriteLine($"bench-serve: {baseUri} model '{model}', {roundCount} rounds of {n} requests per phase, concurrency {c}, {tokens} tokens each");
            if (warmupCount > 0)
            {
                RunPhase(http, model, "warmup", routing: false, warmupCount, c, tokens, words, offset: 1_000_000);
            }
            var results = phases.Select(r => new Phase(r ? "routing on" : "routing off", r, 0, [])).ToList();
            var offset = 0;
            for (var round = 0; round < roundCount; round++)
            {
                for (var j = 0; j < results.Count; j++)
                {
                    var index = round % 2 == 0 ? j : results.Count - 1 - j;
                    var run = RunPhase(http, model, results[index].Name, results[index].Routing, n, c, tokens, words, offset);
                    offset += n;
                    results[index] = results[index] with { WallSeconds = results[index].WallSeconds + run.WallSeconds, Samples = [.. results[index].Samples, .. run.Samples] };
                }
            }
            Report(results, c, tokens);
            if (parse.GetValue(jsonOut) is { } file)
            {
                WriteJson(file.FullName, results, baseUri, c, tokens, words);
            }
            return results.All(p => p.Samples.All(s => s.Ok)) ? 0 : 1;
        });
        return command;
    }

    private static void Require(bool condition, string flag, string message)
    {
        if (!condition)
        {
            throw new ArgumentException($"--{flag} {message}", flag);
        }
    }

    /// <summary>The served model's id, from <c>GET /v1/models</c>.</summary>
    /// <exception cref="CommandFailedException">The server cannot be reached or does not answer like an OpenAI-compatible one.</exception>
    private static string ModelName(HttpClient http)
    {
        var url = http.BaseAddress!;
        string body;
        try
        {
            using var response = http.GetAsync("v1/models").GetAwaiter().GetResult();
            body = response.Content.ReadAsStringAsync().GetAwaiter().GetResult();
            if (!response.IsSuccessStatusCode)
            {
                var hint = response.StatusCode == System.Net.HttpStatusCode.Unauthorized ? " (the server needs --api-key)" : "";
                throw new CommandFailedException($"the server at {url} answered {(int)response.StatusCode} to GET /v1/models{hint}: {Shorten(body)}");
            }
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
        {
            var reason = e is TaskCanceledException ? "no answer within --timeout-seconds" : e.Message;
            throw new CommandFailedException($"cannot reach the server at {url}: {reason}", e);
        }
        try
        {
            using var document = JsonDocument.Parse(body);
            return document.RootElement.GetProperty("data")[0].GetProperty("id").GetString()!;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException)
        {
            throw new CommandFailedException($"{url} did not answer GET /v1/models like an OpenAI-compatible server: {Shorten(body)}", e);
        }
    }

    private static string Shorten(string text)
    {
        var line = text.ReplaceLineEndings(" ").Trim();
        return line.Length > 200 ? line[..200] + "..." : line;
    }

    private static Phase RunPhase(HttpClient http, string model, string name, bool routing, int count, int concurrency, int maxTokens, int words, int offset)
    {
        var samples = new Sample[count];
        var next = -1;
        var clock = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, Math.Min(concurrency, Math.Max(count, 1))).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < count)
            {
                samples[i] = await OneAsync(http, model, routing, maxTokens, Prompt(offset + i, words)).ConfigureAwait(false);
            }
        })).ToArray();
        Task.WaitAll(workers);
        return new Phase(name, routing, clock.Elapsed.TotalSeconds, [.. samples]);
    }

    private static string Prompt(int index, int words)
    {
        var text = new StringBuilder($"Request {index.ToString(CultureInfo.InvariantCulture)}:");
        var state = (uint)index * 2654435761u;
        string[] vocabulary = ["the", "expert", "router", "token", "layer", "cache", "block", "prefix", "model", "replay", "policy", "reward", "gradient", "rollout", "batch", "sample"];
        for (var w = 0; w < words; w++)
        {
            state = (state * 1664525u) + 1013904223u;
            text.Append(' ').Append(vocabulary[(state >> 16) % (uint)vocabulary.Length]);
        }
        return text.ToString();
    }

    private static async Task<Sample> OneAsync(HttpClient http, string model, bool routing, int maxTokens, string prompt)
    {
        var body = new MemoryStream();
        using (var writer = new Utf8JsonWriter(body))
        {
            writer.WriteStartObject();
            writer.WriteString("model", model);
            writer.WriteString("prompt", prompt);
            writer.WriteNumber("max_tokens", maxTokens);
            writer.WriteNumber("temperature", 0);
            writer.WriteBoolean("ignore_eos", true);
            writer.WriteBoolean("stream", true);
            writer.WriteStartObject("stream_options");
            writer.WriteBoolean("include_usage", true);
            writer.WriteEndObject();
            writer.WriteBoolean("return_routed_experts", routing);
            writer.WriteEndObject();
        }
        var clock = Stopwatch.StartNew();
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = new ByteArrayContent(body.ToArray()) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                Console.Error.WriteLine($"bench-serve: HTTP {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync().ConfigureAwait(false)}");
                return new Sample(0, clock.Elapsed.TotalSeconds, 0, 0, false);
            }
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync().ConfigureAwait(false));
            double ttft = -1;
            var outputTokens = 0;
            long routingChars = 0;
            var routedChoices = 0;
            string? line;
            while ((line = await reader.ReadLineAsync().ConfigureAwait(false)) is not null)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    continue;
                }
                if (line == "data: [DONE]")
                {
                    break;
                }
                if (ttft < 0 && line.Contains("\"text\"", StringComparison.Ordinal))
                {
                    ttft = clock.Elapsed.TotalSeconds;
                }
                if (line.Contains("\"routed_experts\"", StringComparison.Ordinal) || line.Contains("\"usage\"", StringComparison.Ordinal) || line.Contains("\"error\"", StringComparison.Ordinal))
                {
                    using var chunk = JsonDocument.Parse(line.AsMemory(6));
                    var root = chunk.RootElement;
                    if (root.TryGetProperty("error", out var error))
                    {
                        Console.Error.WriteLine($"bench-serve: stream error: {error}");
                        return new Sample(ttft, clock.Elapsed.TotalSeconds, outputTokens, routingChars, false);
                    }
                    if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
                    {
                        outputTokens = usage.GetProperty("completion_tokens").GetInt32();
                    }
                    foreach (var choice in root.GetProperty("choices").EnumerateArray())
                    {
                        if (choice.TryGetProperty("routed_experts", out var routed))
                        {
                            routingChars += routed.GetProperty("data").GetString()!.Length;
                            routedChoices++;
                        }
                    }
                }
            }
            var ok = outputTokens > 0 && (!routing || routedChoices == 1);
            return new Sample(ttft, clock.Elapsed.TotalSeconds, outputTokens, routingChars, ok);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException or JsonException)
        {
            Console.Error.WriteLine($"bench-serve: request failed: {e.Message}");
            return new Sample(0, clock.Elapsed.TotalSeconds, 0, 0, false);
        }
    }

    private static double Percentile(List<double> sorted, double p)
    {
        if (sorted.Count == 0)
        {
            return double.NaN;
        }
        var rank = p * (sorted.Count - 1);
        var low = (int)Math.Floor(rank);
        var high = Math.Min(low + 1, sorted.Count - 1);
        return sorted[low] + ((sorted[high] - sorted[low]) * (rank - low));
    }

    private sealed record Figures(int Ok, int Failed, double RequestsPerSecond, double OutputTokensPerSecond, double TtftP50Ms, double TtftP99Ms, double TpotMeanMs, double TpotP50Ms, double RoutingKiBPerRequest);

    private static Figures Summarize(Phase phase)
    {
        var ok = phase.Samples.Where(s => s.Ok).ToList();
        var ttft = ok.Select(s => s.TtftSeconds * 1000).Order().ToList();
        var tpot = ok.Where(s => s.OutputTokens > 1).Select(s => (s.TotalSeconds - s.TtftSeconds) * 1000 / (s.OutputTokens - 1)).Order().ToList();
        return new Figures(
            ok.Count,
            phase.Samples.Count - ok.Count,
            ok.Count / phase.WallSeconds,
            ok.Sum(s => s.OutputTokens) / phase.WallSeconds,
            Percentile(ttft, 0.5),
            Percentile(ttft, 0.99),
            tpot.Count == 0 ? double.NaN : tpot.Average(),
            Percentile(tpot, 0.5),
            ok.Count == 0 ? 0 : ok.Average(s => s.RoutingChars * 3.0 / 4 / 1024));
    }

    private static void Report(List<Phase> phases, int concurrency, int maxTokens)
    {
        Console.WriteLine($"{"phase",-12} {"ok",5} {"fail",5} {"req/s",8} {"out tok/s",10} {"TTFT p50",9} {"TTFT p99",9} {"TPOT mean",10} {"TPOT p50",9} {"routing KiB/req",16}");
        foreach (var phase in phases)
        {
            var f = Summarize(phase);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{phase.Name,-12} {f.Ok,5} {f.Failed,5} {f.RequestsPerSecond,8:F2} {f.OutputTokensPerSecond,10:F1} {f.TtftP50Ms,7:F1}ms {f.TtftP99Ms,7:F1}ms {f.TpotMeanMs,8:F2}ms {f.TpotP50Ms,7:F2}ms {f.RoutingKiBPerRequest,16:F2}"));
        }
        if (phases.Count == 2)
        {
            var off = Summarize(phases[0]);
            var on = Summarize(phases[1]);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"routing on/off: throughput {on.OutputTokensPerSecond / off.OutputTokensPerSecond:F3}x, requests/s {on.RequestsPerSecond / off.RequestsPerSecond:F3}x (concurrency {concurrency}, {maxTokens} tokens per request)"));
        }
    }

    private static void WriteJson(string path, List<Phase> phases, Uri url, int concurrency, int maxTokens, int words)
    {
        using var stream = File.Create(path);
        using var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        writer.WriteStartObject();
        writer.WriteString("url", url.ToString());
        writer.WriteNumber("concurrency", concurrency);
        writer.WriteNumber("max_tokens", maxTokens);
        writer.WriteNumber("prompt_words", words);
        writer.WriteStartArray("phases");
        foreach (var phase in phases)
        {
            var f = Summarize(phase);
            writer.WriteStartObject();
            writer.WriteString("phase", phase.Name);
            writer.WriteBoolean("return_routed_experts", phase.Routing);
            writer.WriteNumber("requests_ok", f.Ok);
            writer.WriteNumber("requests_failed", f.Failed);
            writer.WriteNumber("wall_seconds", phase.WallSeconds);
            writer.WriteNumber("requests_per_second", f.RequestsPerSecond);
            writer.WriteNumber("output_tokens_per_second", f.OutputTokensPerSecond);
            WriteNumber(writer, "ttft_p50_ms", f.TtftP50Ms);
            WriteNumber(writer, "ttft_p99_ms", f.TtftP99Ms);
            WriteNumber(writer, "tpot_mean_ms", f.TpotMeanMs);
            WriteNumber(writer, "tpot_p50_ms", f.TpotP50Ms);
            writer.WriteNumber("routing_kib_per_request", f.RoutingKiBPerRequest);
            writer.WriteEndObject();
        }
        writer.WriteEndArray();
        writer.WriteEndObject();
    }

    private static void WriteNumber(Utf8JsonWriter writer, string name, double value)
    {
        if (double.IsFinite(value))
        {
            writer.WriteNumber(name, value);
        }
        else
        {
            writer.WriteNull(name);
        }
    }
}
