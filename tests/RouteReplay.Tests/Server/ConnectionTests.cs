using System.Text;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>Client disconnects free blocks; a full waiting queue answers 503; the API key guards every route but health and metrics.</summary>
public sealed class ConnectionTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private static HttpRequestMessage LongStream() => new(HttpMethod.Post, "/generate")
    {
        Content = new StringContent("""{"text": "never ending", "stream": true, "sampling_params": {"max_new_tokens": 3500, "ignore_eos": true}}""", Encoding.UTF8, "application/json"),
    };

    private static async Task<int> UsedBlocksAsync(TestServer server) => await server.Engine.InvokeAsync(e => e.Pool.UsedBlockCount);

    private static async Task WaitForNoUsedBlocksAsync(TestServer server)
    {
        for (var attempt = 0; attempt < 500; attempt++)
        {
            if (await UsedBlocksAsync(server) == 0)
            {
                return;
            }
            await Task.Delay(20);
        }
        Assert.Fail($"blocks still used after the client left: {await UsedBlocksAsync(server)}");
    }

    [Fact]
    public async Task A_client_that_disconnects_mid_stream_aborts_its_request_and_frees_its_blocks()
    {
        await using var server = await TestServer.StartAsync(model.Directory);
        using (var response = await server.Client.SendAsync(LongStream(), HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(200, (int)response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var first = await reader.ReadLineAsync();
            Assert.StartsWith("data: ", first);
            Assert.True(await UsedBlocksAsync(server) > 0);
        }
        await WaitForNoUsedBlocksAsync(server);
        Assert.Equal(1, await server.Engine.InvokeAsync(e => e.Stats.RequestsAborted));
        var (status, _) = await server.PostAsync("/v1/completions", """{"prompt": "still serving", "max_tokens": 2}""");
        Assert.Equal(200, status);
    }

    [Fact]
    public async Task A_full_waiting_queue_answers_503_with_retry_after_and_the_server_recovers()
    {
        await using var server = await TestServer.StartAsync(
            model.Directory,
            o => o with { MaxWaitingRequests = 1 },
            TestServer.DefaultEngineOptions with { MaxNumSeqs = 1 });
        var running = new List<HttpResponseMessage>();
        try
        {
            for (var i = 0; i < 2; i++)
            {
                var response = await server.Client.SendAsync(LongStream(), HttpCompletionOption.ResponseHeadersRead);
                running.Add(response);
                Assert.Equal(200, (int)response.StatusCode);
            }
            using var rejected = await server.Client.PostAsync("/v1/completions", new StringContent("""{"prompt": "one too many", "max_tokens": 1}""", Encoding.UTF8, "application/json"));
            Assert.Equal(503, (int)rejected.StatusCode);
            Assert.Equal("1", rejected.Headers.RetryAfter?.ToString());
            var body = await TestServer.ReadJsonAsync(rejected);
            Assert.Equal("queue_full", body.GetProperty("error").GetProperty("code").GetString());
        }
        finally
        {
            foreach (var response in running)
            {
                response.Dispose();
            }
        }
        await WaitForNoUsedBlocksAsync(server);
        for (var attempt = 0; attempt < 100 && server.Server.Host.Admitted > 0; attempt++)
        {
            await Task.Delay(20);
        }
        var (status, _) = await server.PostAsync("/v1/completions", """{"prompt": "room again", "max_tokens": 1}""");
        Assert.Equal(200, status);
    }

    [Fact]
    public async Task With_an_api_key_every_api_route_needs_it_and_health_and_metrics_do_not()
    {
        await using var server = await TestServer.StartAsync(model.Directory, o => o with { ApiKey = "s3cret" });
        const string Body = """{"prompt": "auth", "max_tokens": 1}""";
        Assert.Equal(401, (await server.PostAsync("/v1/completions", Body)).Status);
        var wrong = await server.PostAsync("/v1/completions", Body, apiKey: "s3cret-not");
        Assert.Equal(401, wrong.Status);
        Assert.Equal("authentication_error", wrong.Body.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal(200, (await server.PostAsync("/v1/completions", Body, apiKey: "s3cret")).Status);
        Assert.Equal(401, (await server.PostAsync("/generate", """{"text": "x"}""")).Status);
        Assert.Equal(401, (await server.PostAsync("/flush_cache", "{}")).Status);
        Assert.Equal(401, (await server.PostAsync("/update_weights_from_disk", """{"model_path": "/x"}""")).Status);
        Assert.Equal(401, (await server.GetAsync("/get_model_info")).Status);
        Assert.Equal(401, (await server.GetAsync("/v1/models")).Status);
        Assert.Equal(200, (int)(await server.Client.GetAsync("/health")).StatusCode);
        Assert.Equal(200, (int)(await server.Client.GetAsync("/metrics")).StatusCode);
    }

    [Fact]
    public async Task Without_an_api_key_no_route_asks_for_one()
    {
        await using var server = await TestServer.StartAsync(model.Directory);
        Assert.Equal(200, (await server.PostAsync("/v1/completions", """{"prompt": "open", "max_tokens": 1}""", apiKey: "anything")).Status);
        Assert.Equal(200, (await server.GetAsync("/get_model_info")).Status);
    }

    [Fact]
    public async Task Stopping_the_server_aborts_requests_still_running_after_the_grace_period()
    {
        var server = await TestServer.StartAsync(model.Directory, o => o with { ShutdownGracePeriod = TimeSpan.FromMilliseconds(200) });
        var engine = server.Engine.Engine;
        using var response = await server.Client.SendAsync(LongStream(), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        var stop = System.Diagnostics.Stopwatch.StartNew();
        await server.DisposeAsync();
        Assert.True(stop.Elapsed < TimeSpan.FromSeconds(20), $"stopping took {stop.Elapsed}");
        Assert.False(engine.HasUnfinishedRequests);
    }
}
