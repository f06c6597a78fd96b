using System.Net.Sockets;
using System.Text;
using RouteReplay.Server.Metrics;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>
/// SGLang clients choose their <c>rid</c>s and reuse them: a request's id belongs to it only while it is live, and a
/// client that goes away aborts its own request, never a newer one that took the same id.
/// </summary>
public sealed class RequestIdReuseTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        for (var attempt = 0; attempt < 1500; attempt++)
        {
            if (await condition())
            {
                return;
            }
            await Task.Delay(10);
        }
        Assert.Fail($"timed out waiting until {what}");
    }

    /// <summary>A client that stops reading: a small receive buffer, so what the server writes backs up at once.</summary>
    private static HttpClient StalledClient(Uri address) => new(new SocketsHttpHandler
    {
        MaxResponseDrainSize = 0,
        ResponseDrainTimeout = TimeSpan.Zero,
        ConnectCallback = async (context, cancellationToken) =>
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096, NoDelay = true };
            await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
            return new NetworkStream(socket, ownsSocket: true);
        },
    })
    { BaseAddress = address };

    [Fact]
    public async Task A_client_that_abandons_a_stream_after_its_request_finished_does_not_abort_a_newer_request_with_the_same_rid()
    {
        await using var server = await TestServer.StartAsync(model.Directory);
        var engine = server.Engine;
        var metrics = server.Server.Host.Metrics;
        using var stalled = StalledClient(server.BaseAddress);
        // Every SGLang stream event repeats the output so far with 20 alternatives per token: megabytes the stalled
        // client never reads, so the server's relay is still blocked writing when the engine finishes the request.
        using var request = new HttpRequestMessage(HttpMethod.Post, "/generate")
        {
            Content = new StringContent("""
                {"text": "first", "rid": "reused", "stream": true, "return_logprob": true, "top_logprobs_num": 20, "return_text_in_logprobs": true,
                 "sampling_params": {"max_new_tokens": 250, "ignore_eos": true, "temperature": 0}}
                """, Encoding.UTF8, "application/json"),
        };
        var abandoned = await stalled.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)abandoned.StatusCode);
        await WaitUntilAsync(async () => await engine.InvokeAsync(e => e.Stats.RequestsFinished) == 1, "the first request finished in the engine");
        Assert.Equal(0, metrics.Outcome(RequestOutcome.Ok));

        var second = server.PostAsync("/generate", """
            {"text": "second", "rid": "reused", "sampling_params": {"max_new_tokens": 600, "ignore_eos": true, "temperature": 0}}
            """);
        await WaitUntilAsync(async () => await engine.InvokeAsync(e => e.RunningCount == 1), "the second request runs");
        abandoned.Dispose();
        await WaitUntilAsync(() => Task.FromResult(server.Server.Host.Admitted < 2), "the server saw the first client leave");

        var (status, body) = await second;
        Assert.Equal(200, status);
        Assert.Equal("length", body.GetProperty("meta_info").GetProperty("finish_reason").GetProperty("type").GetString());
        Assert.Equal(600, body.GetProperty("output_ids").GetArrayLength());
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
