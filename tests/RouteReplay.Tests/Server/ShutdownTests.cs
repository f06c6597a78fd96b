using System.Text;
using System.Text.Json;
using RouteReplay.Tests.Support;
using static RouteReplay.Tests.Support.Eventually;

namespace RouteReplay.Tests.Server;

/// <summary>
/// Stopping the server: requests still running when the grace period ends are aborted and end as the README says —
/// finish reason abort, the final chunk (with the routing of the tokens they produced) and <c>[DONE]</c> in a stream,
/// a complete JSON body otherwise — never a connection reset.
/// </summary>
public sealed class ShutdownTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    [Fact]
    public async Task Requests_running_past_the_grace_period_end_with_abort_their_routing_and_done()
    {
        var server = await TestServer.StartAsync(model.Directory, o => o with { ShutdownGracePeriod = TimeSpan.FromMilliseconds(300) });
        var format = server.Server.Host.RoutingFormat;
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromMinutes(2) };
        Task? stopping = null;
        try
        {
            using var streamRequest = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = Json("""
                    {"prompt": "Keep going until the server stops", "max_tokens": 3500, "ignore_eos": true, "temperature": 0, "stream": true,
                     "return_routed_experts": true, "return_token_ids": true, "stream_options": {"include_usage": true}}
                    """),
            };
            using var streamed = await client.SendAsync(streamRequest, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(200, (int)streamed.StatusCode);
            using var reader = new StreamReader(await streamed.Content.ReadAsStreamAsync());
            var lines = new List<string> { (await reader.ReadLineAsync())! };
            var whole = client.PostAsync("/generate", Json("""
                {"text": "And keep going too", "return_routed_experts": true, "sampling_params": {"max_new_tokens": 3500, "ignore_eos": true, "temperature": 0}}
                """));
            await WaitUntilAsync(async () => await server.Engine.InvokeAsync(e => e.RunningCount == 2 && e.Stats.GeneratedTokens > 4), "both requests run");

            stopping = server.DisposeAsync().AsTask();

            string? line;
            while ((line = await reader.ReadLineAsync()) is not null)
            {
                lines.Add(line);
            }
            var events = lines.Where(l => l.StartsWith("data: ", StringComparison.Ordinal)).ToList();
            Assert.Equal("data: [DONE]", events[^1]);
            var chunks = events.SkipLast(1).Select(l => JsonDocument.Parse(l[6..]).RootElement).ToList();
            var withChoices = chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0).Select(c => c.GetProperty("choices")[0]).ToList();
            var final = Assert.Single(withChoices, c => c.GetProperty("finish_reason").ValueKind == JsonValueKind.String);
            Assert.Equal("abort", final.GetProperty("finish_reason").GetString());
            var tokens = withChoices.Where(c => c.TryGetProperty("token_ids", out _)).SelectMany(c => Reference.Ints(c.GetProperty("token_ids"))).ToArray();
            Assert.InRange(tokens.Length, 1, 3499);
            var prompt = model.Tokenizer.Encode("Keep going until the server stops");
            var expected = Reference.Run(model.Directory, Reference.Greedy(prompt, tokens.Length) with { Sampling = new() { Temperature = 0, MaxTokens = tokens.Length, IgnoreEos = true } }).Choices[0];
            Assert.Equal(expected.TokenIds, tokens);
            Assert.Equal(expected.Routing!.Data, Reference.DecodeWire(final.GetProperty("routed_experts"), format, 0, prompt.Count + tokens.Length - 1));
            Assert.Equal(tokens.Length, chunks[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());

            using var wholeResponse = await whole;
            Assert.Equal(200, (int)wholeResponse.StatusCode);
            var body = await TestServer.ReadJsonAsync(wholeResponse);
            var meta = body.GetProperty("meta_info");
            Assert.Equal("abort", meta.GetProperty("finish_reason").GetProperty("type").GetString());
            var outputIds = Reference.Ints(body.GetProperty("output_ids"));
            var wholePrompt = model.Tokenizer.Encode("And keep going too");
            var wholeExpected = Reference.Run(model.Directory, Reference.Greedy(wholePrompt, outputIds.Length) with { Sampling = new() { Temperature = 0, MaxTokens = outputIds.Length, IgnoreEos = true } }).Choices[0];
            Assert.Equal(wholeExpected.TokenIds, outputIds);
            Assert.Equal(Reference.SglangLayout(wholeExpected.Routing!, model.Config.NumHiddenLayers), Convert.FromBase64String(meta.GetProperty("routed_experts").GetString()!));
        }
        finally
        {
            await (stopping ?? server.DisposeAsync().AsTask());
        }
    }

    [Fact]
    public async Task A_request_accepted_after_the_grace_period_ended_is_aborted_at_once()
    {
        await using var server = await TestServer.StartAsync(model.Directory);
        await server.Server.Host.AbortAfterGraceAsync(TimeSpan.Zero, CancellationToken.None);
        Assert.True(server.Server.Host.IsAbortingForShutdown);

        var (status, body) = await server.PostAsync("/generate", """
            {"text": "arrived late", "return_routed_experts": true, "sampling_params": {"max_new_tokens": 3500, "ignore_eos": true}}
            """);
        Assert.Equal(200, status);
        Assert.Equal("abort", body.GetProperty("meta_info").GetProperty("finish_reason").GetProperty("type").GetString());
        Assert.True(body.GetProperty("output_ids").GetArrayLength() < 3500);
    }
}
