using System.Text;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>Server shared by the malformed-request table: a 64 KiB body limit so a huge body is cheap to send.</summary>
public sealed class MalformedServerFixture : IAsyncLifetime
{
    public TinyModelFixture Model { get; } = new();

    public TestServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await TestServer.StartAsync(Model.Directory, o => o with { MaxRequestBodyBytes = 64 << 10 });

    public async Task DisposeAsync()
    {
        await Server.DisposeAsync();
        Model.Dispose();
    }
}

/// <summary>Malformed and hostile requests: each gets a 4xx with an OpenAI-style error body, and the server keeps serving.</summary>
public sealed class MalformedRequestTests(MalformedServerFixture fixture) : IClassFixture<MalformedServerFixture>
{
    private static readonly byte[] InvalidUtf8 = [.. "{\"prompt\": \""u8, 0xFF, 0xFE, 0xC3, .. "\", \"max_tokens\": 1}"u8];

    public static TheoryData<string, string, string, int> Cases => new()
    {
        { "truncated JSON", "/v1/completions", "{\"prompt\": \"x\"", 400 },
        { "empty body", "/v1/completions", "", 400 },
        { "array body", "/v1/completions", "[1, 2]", 400 },
        { "null body", "/v1/completions", "null", 400 },
        { "trailing comma", "/v1/completions", "{\"prompt\": \"x\",}", 400 },
        { "prompt of a wrong type", "/v1/completions", "{\"prompt\": 5}", 400 },
        { "missing prompt", "/v1/completions", "{\"max_tokens\": 3}", 400 },
        { "empty prompt", "/v1/completions", "{\"prompt\": \"\"}", 400 },
        { "negative token id", "/v1/completions", "{\"prompt\": [-1, 2]}", 400 },
        { "token id beyond the vocabulary", "/v1/completions", "{\"prompt\": [999999999]}", 400 },
        { "batched prompts", "/v1/completions", "{\"prompt\": [\"a\", \"b\"]}", 400 },
        { "negative max_tokens", "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": -1}", 400 },
        { "zero max_tokens", "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 0}", 400 },
        { "huge max_tokens", "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 1e30}", 400 },
        { "max_tokens as text", "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": \"ten\"}", 400 },
        { "negative temperature", "/v1/completions", "{\"prompt\": \"x\", \"temperature\": -1}", 400 },
        { "temperature as text", "/v1/completions", "{\"prompt\": \"x\", \"temperature\": \"hot\"}", 400 },
        { "top_p of zero", "/v1/completions", "{\"prompt\": \"x\", \"top_p\": 0}", 400 },
        { "top_p above one", "/v1/completions", "{\"prompt\": \"x\", \"top_p\": 1.5}", 400 },
        { "top_k below -1", "/v1/completions", "{\"prompt\": \"x\", \"top_k\": -2}", 400 },
        { "n of zero", "/v1/completions", "{\"prompt\": \"x\", \"n\": 0}", 400 },
        { "huge n", "/v1/completions", "{\"prompt\": \"x\", \"n\": 100000}", 400 },
        { "huge seed", "/v1/completions", "{\"prompt\": \"x\", \"seed\": 1e40}", 400 },
        { "stop of a wrong type", "/v1/completions", "{\"prompt\": \"x\", \"stop\": 5}", 400 },
        { "empty stop string", "/v1/completions", "{\"prompt\": \"x\", \"stop\": [\"\"]}", 400 },
        { "stream as text", "/v1/completions", "{\"prompt\": \"x\", \"stream\": \"yes\"}", 400 },
        { "stream_options of a wrong type", "/v1/completions", "{\"prompt\": \"x\", \"stream_options\": 5}", 400 },
        { "too many logprobs", "/v1/completions", "{\"prompt\": \"x\", \"logprobs\": 50}", 400 },
        { "negative routing start", "/v1/completions", "{\"prompt\": \"x\", \"routed_experts_start\": -1}", 400 },
        { "routing start beyond the prompt", "/v1/completions", "{\"prompt\": \"x\", \"routed_experts_start\": 1000, \"return_routed_experts\": true}", 400 },
        { "return_routed_experts as a number", "/v1/completions", "{\"prompt\": \"x\", \"return_routed_experts\": 1}", 400 },
        { "unknown model", "/v1/completions", "{\"model\": \"gpt-4\", \"prompt\": \"x\"}", 404 },
        { "deeply nested JSON", "/v1/completions", "{\"prompt\": \"x\", \"extra\": " + new string('[', 5000) + new string(']', 5000) + "}", 400 },
        { "huge body", "/v1/completions", "{\"prompt\": \"" + new string('a', 200_000) + "\"}", 413 },
        { "lone surrogate escape", "/v1/completions", "{\"prompt\": \"\\udc00\"}", 400 },
        { "missing messages", "/v1/chat/completions", "{\"max_tokens\": 3}", 400 },
        { "empty messages", "/v1/chat/completions", "{\"messages\": []}", 400 },
        { "messages as text", "/v1/chat/completions", "{\"messages\": \"hi\"}", 400 },
        { "unknown role", "/v1/chat/completions", "{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}", 400 },
        { "missing role", "/v1/chat/completions", "{\"messages\": [{\"content\": \"x\"}]}", 400 },
        { "content of a wrong type", "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", 400 },
        { "image content part", "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"x\"}}]}]}", 400 },
        { "enable_thinking as text", "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"chat_template_kwargs\": {\"enable_thinking\": \"no\"}}", 400 },
        { "top_logprobs too large", "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logprobs\": true, \"top_logprobs\": 99}", 400 },
        { "generate with text and input_ids", "/generate", "{\"text\": \"x\", \"input_ids\": [1]}", 400 },
        { "generate with neither", "/generate", "{\"sampling_params\": {}}", 400 },
        { "generate sampling_params as text", "/generate", "{\"text\": \"x\", \"sampling_params\": \"greedy\"}", 400 },
        { "generate negative max_new_tokens", "/generate", "{\"text\": \"x\", \"sampling_params\": {\"max_new_tokens\": -5}}", 400 },
        { "generate input_ids with text", "/generate", "{\"input_ids\": [1, \"a\"]}", 400 },
        { "generate prompt longer than the model", "/generate", "{\"input_ids\": [" + string.Join(',', Enumerable.Repeat(7, 5000)) + "]}", 400 },
        { "update weights without a path", "/update_weights_from_disk", "{}", 400 },
        { "update weights from a missing folder", "/update_weights_from_disk", "{\"model_path\": \"/no/such/model\"}", 400 },
        { "abort without a rid", "/abort_request", "{}", 400 },
        { "unknown route", "/v1/embeddings", "{\"input\": \"x\"}", 404 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Is_answered_with_a_4xx_error_body_and_the_server_keeps_serving(string name, string path, string body, int status)
    {
        var server = fixture.Server;
        using (var response = await server.Client.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json")))
        {
            await AssertError(response, status, name);
        }
        await AssertStillServing(server);
    }

    [Fact]
    public async Task Invalid_utf8_and_a_wrong_method_are_4xx_too()
    {
        var server = fixture.Server;
        using (var response = await server.Client.PostAsync("/v1/completions", new ByteArrayContent(InvalidUtf8)))
        {
            await AssertError(response, 400, "invalid UTF-8");
        }
        using (var response = await server.Client.GetAsync("/v1/completions"))
        {
            await AssertError(response, 405, "GET on a POST route");
        }
        using (var response = await server.Client.PutAsync("/generate", new StringContent("{}")))
        {
            await AssertError(response, 405, "PUT on a POST route");
        }
        await AssertStillServing(server);
    }

    private static async Task AssertError(HttpResponseMessage response, int status, string name)
    {
        Assert.True(status == (int)response.StatusCode, $"{name}: expected {status}, got {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        var error = (await TestServer.ReadJsonAsync(response)).GetProperty("error");
        var message = error.GetProperty("message").GetString();
        Assert.False(string.IsNullOrEmpty(message), name);
        foreach (var internals in new[] { "(Parameter", "System.", "Exception", "Nullable" })
        {
            Assert.False(message.Contains(internals, StringComparison.Ordinal), $"{name}: the message shows .NET internals: {message}");
        }
        Assert.False(string.IsNullOrEmpty(error.GetProperty("type").GetString()), name);
        Assert.True(error.TryGetProperty("param", out _), name);
        Assert.True(error.TryGetProperty("code", out _), name);
    }

    private static async Task AssertStillServing(TestServer server)
    {
        var (status, body) = await server.PostAsync("/v1/completions", """{"prompt": "still alive", "max_tokens": 1}""");
        Assert.Equal(200, status);
        Assert.Equal(1, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }
}
