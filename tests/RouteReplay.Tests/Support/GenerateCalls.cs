using System.Text;
using System.Text.Json;
using RouteReplay.Engine;
using RouteReplay.Server.Disaggregation;

namespace RouteReplay.Tests.Support;

/// <summary>An engine request as SGLang's <c>/generate</c> body, and its answer's choices, for tests against real servers.</summary>
public static class GenerateCalls
{
    /// <summary>One choice of an answer: output ids, SGLang's base64 routing, finish reason type.</summary>
    public sealed record Choice(int[] OutputIds, string Routing, string Finish);

    public static string Body(EngineRequest request)
    {
        var sampling = request.Sampling;
        var body = new Dictionary<string, object?>
        {
            ["input_ids"] = request.PromptTokenIds,
            ["rid"] = request.RequestId,
            ["return_routed_experts"] = true,
            ["routed_experts_start_len"] = request.RoutingStart,
            ["sampling_params"] = new Dictionary<string, object?>
            {
                ["max_new_tokens"] = sampling.MaxTokens,
                ["temperature"] = sampling.Temperature,
                ["top_p"] = sampling.TopP,
                ["top_k"] = sampling.TopK,
                ["sampling_seed"] = sampling.Seed,
                ["ignore_eos"] = sampling.IgnoreEos,
                ["n"] = request.N,
            },
        };
        return JsonSerializer.Serialize(body);
    }

    /// <summary>Posts the request (naming prefill servers as a router does, when given) and returns its choices; fails the test on a non-200 answer.</summary>
    public static async Task<Choice[]> RunAsync(HttpClient client, EngineRequest request, string? prefill = null)
    {
        var (status, text) = await PostAsync(client, request, prefill);
        Assert.True(status == 200, $"{request.RequestId}: {status} {text}");
        using var document = JsonDocument.Parse(text);
        var root = document.RootElement;
        var items = root.ValueKind == JsonValueKind.Array ? root.EnumerateArray().ToArray() : [root];
        return [.. items.Select(item =>
        {
            var meta = item.GetProperty("meta_info");
            return new Choice(
                [.. item.GetProperty("output_ids").EnumerateArray().Select(e => e.GetInt32())],
                meta.GetProperty("routed_experts").GetString()!,
                meta.GetProperty("finish_reason").GetProperty("type").GetString()!);
        })];
    }

    /// <summary>Posts the request; <paramref name="prefill"/> names prefill servers as a router does, signed with the tests' cluster key.</summary>
    public static async Task<(int Status, string Text)> PostAsync(HttpClient client, EngineRequest request, string? prefill = null)
    {
        using var response = await SendAsync(client, request, prefill, TestClusterKey.Key);
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>Posts the request, naming <paramref name="prefill"/> signed with <paramref name="key"/> (unsigned when null); the caller reads and disposes the answer.</summary>
    public static Task<HttpResponseMessage> SendAsync(HttpClient client, EngineRequest request, string? prefill, RouteReplay.Disaggregation.ClusterKey? key)
    {
        var message = new HttpRequestMessage(HttpMethod.Post, "/generate") { Content = new StringContent(Body(request), Encoding.UTF8, "application/json") };
        if (prefill is not null)
        {
            message.Headers.Add(FleetHeaders.Prefill, prefill);
            if (key is not null)
            {
                message.Headers.Add(FleetHeaders.PrefillSignature, key.SignPrefillList(prefill));
            }
        }
        return client.SendAsync(message);
    }

    /// <summary>Runs every request at once and returns each one's choices by request id.</summary>
    public static async Task<Dictionary<string, Choice[]>> RunAllAsync(HttpClient client, IEnumerable<EngineRequest> requests, string? prefill = null)
    {
        var calls = requests.Select(async r => (r.RequestId, Choices: await RunAsync(client, r, prefill))).ToArray();
        return (await Task.WhenAll(calls)).ToDictionary(c => c.RequestId, c => c.Choices);
    }

    /// <summary>Asserts two runs gave the same output ids, routing bytes and finish reasons, choice by choice.</summary>
    public static void AssertIdentical(Dictionary<string, Choice[]> expected, Dictionary<string, Choice[]> actual)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (id, choices) in expected)
        {
            Assert.Equal(choices.Length, actual[id].Length);
            for (var c = 0; c < choices.Length; c++)
            {
                Assert.True(choices[c].OutputIds.SequenceEqual(actual[id][c].OutputIds), $"{id} choice {c}: output ids differ");
                Assert.True(choices[c].Routing == actual[id][c].Routing, $"{id} choice {c}: routing differs");
                Assert.Equal(choices[c].Finish, actual[id][c].Finish);
                Assert.True(choices[c].Routing.Length > 0);
            }
        }
    }
}
