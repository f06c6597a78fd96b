using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>
/// A request of more choices than the server ever admits at once (<c>--max-num-seqs</c> plus
/// <c>--max-waiting-requests</c>) could only ever get 503: it is a 400 naming <c>n</c> and the limit.
/// </summary>
public sealed class ChoiceLimitTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    [Theory]
    [InlineData("/v1/completions", """{"prompt": "many endings", "max_tokens": 2, "n": 9}""", "n")]
    [InlineData("/generate", """{"text": "many endings", "sampling_params": {"max_new_tokens": 2, "n": 9}}""", "sampling_params.n")]
    public async Task More_choices_than_the_server_ever_admits_is_a_400_naming_n_and_the_limit(string path, string body, string field)
    {
        await using var server = await TestServer.StartAsync(model.Directory, o => o with { MaxWaitingRequests = 4 }, TestServer.DefaultEngineOptions with { MaxNumSeqs = 4 });

        var (status, error) = await server.PostAsync(path, body);

        Assert.Equal(400, status);
        Assert.Equal(field, error.GetProperty("error").GetProperty("param").GetString());
        var message = error.GetProperty("error").GetProperty("message").GetString()!;
        Assert.Contains($"'{field}' is 9", message);
        Assert.Contains("ever admits at once: 8", message);
        Assert.Contains("--max-num-seqs 4", message);
        Assert.Contains("--max-waiting-requests 4", message);

        var (fits, _) = await server.PostAsync(path, body.Replace("\"n\": 9", "\"n\": 8", StringComparison.Ordinal));
        Assert.Equal(200, fits);
    }
}
