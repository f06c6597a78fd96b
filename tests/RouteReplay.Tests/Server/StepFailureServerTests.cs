using Microsoft.Extensions.Logging;
using RouteReplay.Server;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>A step that throws fails its request with a 500 and the server keeps serving, counting it in <c>/metrics</c>.</summary>
public sealed class StepFailureServerTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private const int Marker = 40000;

    [Fact]
    public async Task A_failed_step_answers_500_for_its_request_and_the_server_keeps_serving_and_counts_it()
    {
        var engine = EngineRunner.CreateWrapped(model, TestServer.DefaultEngineOptions, inner => new FaultyBackend(inner, FaultyBackend.OnToken(Marker), afterForward: true));
        var options = new ServerOptions { ModelPath = model.Directory, Port = 0, ServedModelName = "tiny" };
        await using var server = RolloutServer.Create(engine, options, TestServer.WeightsVersion, logging => logging.SetMinimumLevel(LogLevel.None));
        await server.StartAsync();
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        using var failed = await client.PostAsync("/v1/completions", Json($$"""{"prompt": [9707, 11, {{Marker}}], "max_tokens": 4, "return_routed_experts": true}"""));
        Assert.Equal(500, (int)failed.StatusCode);
        var body = await failed.Content.ReadAsStringAsync();
        Assert.Contains("the engine step running this request failed: simulated fault after the forward", body);
        Assert.DoesNotContain("routed_experts", body);

        using var ok = await client.PostAsync("/v1/completions", Json("""{"prompt": [9707, 11], "max_tokens": 4, "return_routed_experts": true}"""));
        Assert.Equal(200, (int)ok.StatusCode);
        Assert.Equal(200, (int)(await client.GetAsync("/health")).StatusCode);
        var metrics = await client.GetStringAsync("/metrics");
        Assert.Contains("\nroutereplay_step_failures_total 1\n", metrics);
        Assert.Contains("# TYPE routereplay_step_failures_total counter", metrics);
    }

    private static StringContent Json(string json) => new(json, System.Text.Encoding.UTF8, "application/json");
}
