using System.Text;
using System.Text.Json;
using RouteReplay.Server.Metrics;
using RouteReplay.Tests.Support;
using static RouteReplay.Tests.Support.Eventually;

namespace RouteReplay.Tests.Server;

/// <summary>The request and token counters of <c>/metrics</c> add up: to the requests sent, and to the responses' usage.</summary>
public sealed class RequestMetricsTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private const int PromptLength = 64;

    [Fact]
    public async Task Requests_of_many_choices_sharing_a_prompt_count_it_once_so_the_hit_rate_is_the_cached_share_of_the_prompts()
    {
        await using var server = await TestServer.StartAsync(model.Directory);
        var prompt = model.Tokenizer.Encode(string.Concat(Enumerable.Repeat("eight choices share one prompt. ", 20))).Take(PromptLength).ToArray();
        Assert.Equal(PromptLength, prompt.Length);
        var body = $$$"""{"input_ids": {{{JsonSerializer.Serialize(prompt)}}}, "sampling_params": {"n": 8, "max_new_tokens": 2, "temperature": 1, "seed": 5}}""";

        var cachedPerRequest = new List<int>();
        for (var request = 0; request < 2; request++)
        {
            var (status, choices) = await server.PostAsync("/generate", body);
            Assert.Equal(200, status);
            Assert.Equal(8, choices.GetArrayLength());
            var cached = choices.EnumerateArray().Select(c => c.GetProperty("meta_info").GetProperty("cached_tokens").GetInt32()).Distinct().Single();
            cachedPerRequest.Add(cached);
        }

        // The second request finds the prompt's three full blocks of 16 cached; the block of its last token is always computed.
        Assert.Equal([0, 48], cachedPerRequest);
        var metrics = await server.MetricsAsync();
        Assert.Equal(2 * PromptLength, metrics["routereplay_prompt_tokens_total"]);
        Assert.Equal(48, metrics["routereplay_cached_prompt_tokens_total"]);
        Assert.Equal(48.0 / (2 * PromptLength), metrics["routereplay_prefix_cache_hit_rate"]);
    }

    [Fact]
    public async Task Clients_that_disconnect_are_counted_so_the_statuses_add_up_to_the_requests_sent()
    {
        await using var server = await TestServer.StartAsync(model.Directory);
        Assert.Equal(200, (await server.PostAsync("/generate", """{"text": "finished", "sampling_params": {"max_new_tokens": 2}}""")).Status);

        using (var stream = await server.Client.SendAsync(LongRequest(stream: true), HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(200, (int)stream.StatusCode);
            using var reader = new StreamReader(await stream.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: ", await reader.ReadLineAsync());
        }
        await WaitUntilAsync(async () => await DisconnectedAsync(server) == 1, "the client that left the stream is counted");

        using (var leaving = new CancellationTokenSource())
        {
            var whole = server.Client.SendAsync(LongRequest(stream: false), leaving.Token);
            var generatedBefore = await server.Engine.InvokeAsync(e => e.Stats.GeneratedTokens);
            await WaitUntilAsync(async () => await server.Engine.InvokeAsync(e => e.Stats.GeneratedTokens) > generatedBefore + 2, "the unstreamed request generates");
            await leaving.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => whole);
        }
        await WaitUntilAsync(async () => await DisconnectedAsync(server) == 2, "the client that left before its whole answer is counted");

        var metrics = await server.MetricsAsync();
        var statuses = Enum.GetValues<RequestOutcome>().ToDictionary(o => o, o => metrics[$"routereplay_requests_total{{status=\"{o.ToString().ToLowerInvariant()}\"}}"]);
        Assert.Equal(1, statuses[RequestOutcome.Ok]);
        Assert.Equal(2, statuses[RequestOutcome.Disconnected]);
        Assert.Equal(3, statuses.Values.Sum());
    }

    private static HttpRequestMessage LongRequest(bool stream) => new(HttpMethod.Post, "/generate")
    {
        Content = new StringContent(
            $$$"""{"text": "the client leaves", "stream": {{{(stream ? "true" : "false")}}}, "sampling_params": {"max_new_tokens": 3000, "ignore_eos": true}}""",
            Encoding.UTF8,
            "application/json"),
    };

    private static async Task<double> DisconnectedAsync(TestServer server) =>
        (await server.MetricsAsync()).GetValueOrDefault("routereplay_requests_total{status=\"disconnected\"}");
}
