using System.Text;
using RouteReplay.Engine;
using RouteReplay.Tests.Support;
using static RouteReplay.Tests.Support.Eventually;

namespace RouteReplay.Tests.Server;

/// <summary>
/// SGLang clients choose their <c>rid</c>s and reuse them: a request's id belongs to it only while it is live, and a
/// client that goes away aborts its own request, never a newer one that took the same id.
/// </summary>
public sealed class RequestIdReuseTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    /// <remarks>
    /// The engine's step thread is held by one command while the client leaves, so the order is exact: the client's
    /// request is still running when its stream is disposed (the server queues the abort that disposal asks for), then,
    /// still inside the command, the request runs to its end and a new request takes its id, and only then does the
    /// queued abort reach the engine. It must end the request it was for, which has finished, and nothing else.
    /// </remarks>
    [Fact]
    public async Task A_client_that_leaves_aborts_its_own_request_never_a_newer_one_that_reused_its_rid()
    {
        await using var server = await TestServer.StartAsync(model.Directory);
        var engine = server.Engine;
        using var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0, ResponseDrainTimeout = TimeSpan.Zero }) { BaseAddress = server.BaseAddress };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/generate")
        {
            Content = new StringContent("""
                {"text": "first", "rid": "reused", "stream": true, "sampling_params": {"max_new_tokens": 200, "ignore_eos": true, "temperature": 0}}
                """, Encoding.UTF8, "application/json"),
        };
        var leaving = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)leaving.StatusCode);
        using (var reader = new StreamReader(await leaving.Content.ReadAsStreamAsync(), leaveOpen: true))
        {
            Assert.StartsWith("data: ", await reader.ReadLineAsync());
        }

        using var clientLeft = new ManualResetEventSlim();
        var newer = new EngineRunner();
        var held = engine.InvokeAsync(e =>
        {
            clientLeft.Wait(TimeSpan.FromMinutes(1));
            Assert.True(e.HasUnfinishedRequests, "the first request ended before its client left");
            while (e.HasUnfinishedRequests)
            {
                e.Step();
            }
            e.AddRequest(new EngineRequest
            {
                RequestId = "reused",
                PromptTokenIds = model.Tokenizer.Encode("second"),
                Sampling = new SamplingParams { Temperature = 0, MaxTokens = 60, IgnoreEos = true },
            }, newer);
            return e.Stats.RequestsFinished;
        });
        leaving.Dispose();
        await WaitUntilAsync(() => Task.FromResult(server.Server.Host.Admitted == 0), "the server saw the client leave");
        clientLeft.Set();
        Assert.Equal(1, await held);

        await WaitUntilAsync(async () => await engine.InvokeAsync(e => !e.HasUnfinishedRequests), "the newer request finished");
        var result = newer.Results["reused"];
        Assert.Equal(FinishReason.Length, result.Choices[0].FinishReason);
        Assert.Equal(60, result.Choices[0].TokenIds.Count);
        Assert.Equal(0, await engine.InvokeAsync(e => e.Stats.RequestsAborted));
    }

    [Fact]
    public async Task A_second_live_request_with_the_same_rid_is_a_400_naming_rid_and_abort_request_ends_the_live_one()
    {
        await using var server = await TestServer.StartAsync(model.Directory);
        var done = await server.PostAsync("/generate", """{"text": "earlier", "rid": "mine", "sampling_params": {"max_new_tokens": 2}}""");
        Assert.Equal(200, done.Status);
        var running = server.PostAsync("/generate", """{"text": "live", "rid": "mine", "sampling_params": {"max_new_tokens": 3000, "ignore_eos": true}}""");
        await WaitUntilAsync(async () => await server.Engine.InvokeAsync(e => e.Stats.GeneratedTokens > 2), "the live request generates");

        var (status, body) = await server.PostAsync("/generate", """{"text": "duplicate", "rid": "mine", "sampling_params": {"max_new_tokens": 2}}""");
        Assert.Equal(400, status);
        Assert.Equal("rid", body.GetProperty("error").GetProperty("param").GetString());
        Assert.Contains("'mine'", body.GetProperty("error").GetProperty("message").GetString());

        var abort = await server.PostAsync("/abort_request", """{"rid": "mine"}""");
        Assert.Equal(1, abort.Body.GetProperty("num_aborted_requests").GetInt32());
        var result = await running;
        Assert.Equal("abort", result.Body.GetProperty("meta_info").GetProperty("finish_reason").GetProperty("type").GetString());
    }
}
