using System.Text;
using System.Text.Json;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>
/// The real <c>routereplay serve</c> process put to sleep and woken over HTTP: <c>--sleep-wait-timeout-seconds</c>
/// bounds how long a request waits while the memory is released, and the server answers as before once woken.
/// </summary>
public sealed class ServeSleepCliTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>, IDisposable
{
    private const string Request = """{"text": "the trainer has the GPU", "sampling_params": {"max_new_tokens": 4, "temperature": 0}, "return_routed_experts": true}""";

    private readonly string _cache = Directory.CreateTempSubdirectory("routereplay-sleep-").FullName;

    private static async Task<(int Status, string Text)> PostAsync(HttpClient client, string path, string body)
    {
        using var response = await client.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_request_to_a_sleeping_serve_gets_503_past_the_wait_timeout_flag_and_the_same_answer_after_wake_up()
    {
        await using var serve = await CliProcess.StartAsync(_cache, "serve", "--model", model.Directory, "--port", "0", "--num-blocks", "256", "--sleep-wait-timeout-seconds", "0.25");
        var (status, before) = await PostAsync(serve.Client, "/generate", Request);
        Assert.Equal(200, status);

        Assert.Equal(200, (await PostAsync(serve.Client, "/sleep?level=1", "")).Status);
        var (sleeping, error) = await PostAsync(serve.Client, "/generate", Request);

        Assert.Equal(503, sleeping);
        using (var document = JsonDocument.Parse(error))
        {
            Assert.Contains("--sleep-wait-timeout-seconds 0.25", document.RootElement.GetProperty("error").GetProperty("message").GetString());
        }
        using (var state = JsonDocument.Parse(await serve.Client.GetStringAsync("/is_sleeping")))
        {
            Assert.True(state.RootElement.GetProperty("is_sleeping").GetBoolean());
        }
        Assert.Equal(200, (await PostAsync(serve.Client, "/wake_up", "")).Status);
        var (awake, after) = await PostAsync(serve.Client, "/generate", Request);
        Assert.Equal(200, awake);
        using var expected = JsonDocument.Parse(before);
        using var actual = JsonDocument.Parse(after);
        Assert.Equal(expected.RootElement.GetProperty("output_ids").GetRawText(), actual.RootElement.GetProperty("output_ids").GetRawText());
        Assert.Equal(
            expected.RootElement.GetProperty("meta_info").GetProperty("routed_experts").GetString(),
            actual.RootElement.GetProperty("meta_info").GetProperty("routed_experts").GetString());
    }

    public void Dispose() => Directory.Delete(_cache, recursive: true);
}
