using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>Liveness and metrics as probes and scrapers call them: <c>HEAD /health</c>, <c>/metrics/</c>, with no API key.</summary>
public sealed class OpenPathTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    [Fact]
    public async Task Head_health_is_200_and_metrics_with_a_trailing_slash_is_metrics_without_a_key()
    {
        await using var server = await TestServer.StartAsync(model.Directory, o => o with { ApiKey = "secret" });

        using (var head = await server.Client.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/health")))
        {
            Assert.Equal(200, (int)head.StatusCode);
        }
        foreach (var path in new[] { "/metrics", "/metrics/" })
        {
            using var metrics = await server.Client.GetAsync(path);
            Assert.True(200 == (int)metrics.StatusCode, $"{path}: {(int)metrics.StatusCode} {await metrics.Content.ReadAsStringAsync()}");
            Assert.Equal("text/plain", metrics.Content.Headers.ContentType?.MediaType);
            Assert.Contains("routereplay_requests_total", await metrics.Content.ReadAsStringAsync());
        }
        using (var post = await server.Client.PostAsync("/metrics/", new StringContent("{}")))
        {
            Assert.Equal(405, (int)post.StatusCode);
        }
        using var generate = await server.Client.PostAsync("/generate/", new StringContent("{}"));
        Assert.Equal(401, (int)generate.StatusCode);
    }
}
