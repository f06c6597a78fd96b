using System.Globalization;
using System.Text;
using System.Text.Json;

namespace RouteReplay.DeviceChecks;

/// <summary>
/// Batch invariance as a user sees it, through a running <c>serve</c>: probe requests (greedy and seeded sampling, with
/// routing) sent one at a time, then again among many concurrent clients whose requests share the probes' steps, chunk
/// their prefills and come and go. Every probe must return the same token ids and the same routing bytes both times.
/// </summary>
public static class BatchInvarianceCheck
{
    private const int Probes = 8;
    private const int Clients = 40;

    public static CheckResult Run(string baseUrl, string name)
    {
        using var http = new HttpClient { BaseAddress = new Uri(baseUrl), Timeout = TimeSpan.FromMinutes(5) };
        var model = Model(http);
        var probes = Enumerable.Range(0, Probes).Select(i => Probe(model, i)).ToArray();
        var alone = probes.Select(p => Send(http, p).GetAwaiter().GetResult()).ToArray();

        using var stop = new CancellationTokenSource();
        var background = Enumerable.Range(0, Clients).Select(c => LoadAsync(http, model, c, stop.Token)).ToArray();
        Thread.Sleep(TimeSpan.FromSeconds(3));
        var loaded = Task.WhenAll(probes.Select(async (p, i) =>
        {
            await Task.Delay(i * 150).ConfigureAwait(false);
            return await Send(http, p).ConfigureAwait(false);
        })).GetAwaiter().GetResult();
        stop.Cancel();
        var counts = Task.WhenAll(background).GetAwaiter().GetResult();
        var started = counts.Sum(c => c.Started);
        var finished = counts.Sum(c => c.Finished);

        var sameTokens = 0;
        var sameRouting = 0;
        for (var i = 0; i < Probes; i++)
        {
            sameTokens += alone[i].Tokens == loaded[i].Tokens ? 1 : 0;
            sameRouting += alone[i].Routing == loaded[i].Routing ? 1 : 0;
        }
        var passed = sameTokens == Probes && sameRouting == Probes && started > Clients;
        var summary = $"{Probes} probes alone vs among {Clients} concurrent clients ({started} background requests started, {finished} finished while the probes ran): " +
            $"identical tokens {sameTokens}/{Probes}, identical routing {sameRouting}/{Probes}";
        return new CheckResult(name, passed, summary, w =>
        {
            w.WriteNumber("probes", Probes);
            w.WriteNumber("clients", Clients);
            w.WriteNumber("background_requests_started", started);
            w.WriteNumber("background_requests_finished", finished);
            w.WriteNumber("identical_tokens", sameTokens);
            w.WriteNumber("identical_routing", sameRouting);
        });
    }

    private static string Model(HttpClient http)
    {
        using var document = JsonDocument.Parse(http.GetStringAsync("/v1/models").GetAwaiter().GetResult());
        return document.RootElement.GetProperty("data")[0].GetProperty("id").GetString()!;
    }

    /// <summary>Probe i: prompts of 30 to 700 words, greedy for even i, seeded sampling for odd i.</summary>
    private static string Probe(string model, int i)
    {
        var words = new[] { 30, 700, 120, 400, 60, 250, 520, 15 }[i];
        var sampling = i % 2 == 0 ? "\"temperature\": 0" : $"\"temperature\": 0.8, \"top_p\": 0.95, \"seed\": {1000 + i}";
        return $$"""{"model": "{{model}}", "prompt": "{{Text(i, words)}}", "max_tokens": 48, "ignore_eos": true, {{sampling}}, "return_token_ids": true, "return_routed_experts": true}""";
    }

    private static async Task<(string Tokens, string Routing)> Send(HttpClient http, string body)
    {
        using var response = await http.PostAsync("/v1/completions", new StringContent(body, Encoding.UTF8, "application/json")).ConfigureAwait(false);
        var text = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"a probe failed with {(int)response.StatusCode}: {text}");
        }
        using var document = JsonDocument.Parse(text);
        var choice = document.RootElement.GetProperty("choices")[0];
        return (choice.GetProperty("token_ids").GetRawText(), choice.GetProperty("routed_experts").GetProperty("data").GetString()!);
    }

    /// <summary>One background client: requests of varied prompt and output lengths until stopped; returns how many it started and finished.</summary>
    private static async Task<(int Started, int Finished)> LoadAsync(HttpClient http, string model, int client, CancellationToken stop)
    {
        var started = 0;
        var done = 0;
        for (var n = 0; !stop.IsCancellationRequested; n++)
        {
            var words = 20 + ((client * 37 + n * 101) % 600);
            var tokens = 16 + ((client * 13 + n * 29) % 200);
            var body = $$"""{"model": "{{model}}", "prompt": "{{Text(10_000 + (client * 1000) + n, words)}}", "max_tokens": {{tokens}}, "ignore_eos": true, "temperature": 0.7, "seed": {{n}}}""";
            started++;
            try
            {
                using var response = await http.PostAsync("/v1/completions", new StringContent(body, Encoding.UTF8, "application/json"), stop).ConfigureAwait(false);
                done += response.IsSuccessStatusCode ? 1 : 0;
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
        return (started, done);
    }

    private static string Text(int seed, int words)
    {
        string[] vocabulary = ["route", "expert", "token", "layer", "replay", "gradient", "policy", "reward", "cache", "block", "the", "of", "and", "model", "train", "sample"];
        var text = new StringBuilder();
        var state = (ulong)seed * 0x9E3779B97F4A7C15UL + 1;
        for (var w = 0; w < words; w++)
        {
            state = (state * 6364136223846793005UL) + 1442695040888963407UL;
            text.Append(w == 0 ? "" : " ").Append(vocabulary[(int)(state >> 60)]);
            if (w % 11 == 10)
            {
                text.Append(' ').Append((state >> 40 & 0xFFFF).ToString(CultureInfo.InvariantCulture));
            }
        }
        return text.ToString();
    }
}
