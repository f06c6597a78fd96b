using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>An error about a field names it as the client wrote it in its request, whichever check found it.</summary>
public sealed class SglangFieldNameTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>, IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(model.Directory);

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private static string LongText => string.Concat(Enumerable.Repeat("word ", 5000));

    public static TheoryData<string, string, string> Cases => new()
    {
        { "/generate", """{"text": "x", "sampling_params": {"top_p": 0}}""", "sampling_params.top_p" },
        { "/generate", """{"text": "x", "sampling_params": {"stop": [""]}}""", "sampling_params.stop" },
        { "/generate", """{"text": "x", "return_routed_experts": true, "routed_experts_start_len": 1000}""", "routed_experts_start_len" },
        { "/generate", """{"text": ""}""", "text" },
        { "/generate", """{"input_ids": []}""", "input_ids" },
        { "/generate", $$"""{"text": "{{LongText}}"}""", "text" },
        { "/generate", $$"""{"input_ids": [{{string.Join(',', Enumerable.Repeat(7, 5000))}}]}""", "input_ids" },
        { "/v1/chat/completions", $$"""{"messages": [{"role": "user", "content": "{{LongText}}"}]}""", "messages" },
        { "/v1/completions", """{"prompt": "x", "top_p": 0}""", "top_p" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Errors_name_the_field_as_the_client_wrote_it(string path, string body, string field)
    {
        var (status, error) = await _server.PostAsync(path, body);

        Assert.Equal(400, status);
        Assert.Equal(field, error.GetProperty("error").GetProperty("param").GetString());
        if (field.StartsWith("sampling_params.", StringComparison.Ordinal) || field == "routed_experts_start_len")
        {
            Assert.Contains(field, error.GetProperty("error").GetProperty("message").GetString());
        }
    }

    [Fact]
    public async Task A_new_rid_may_not_be_a_running_choice_id_nor_make_choice_ids_that_are_running_rids()
    {
        var batch = _server.PostAsync("/generate", """{"text": "two long choices", "rid": "batch", "sampling_params": {"n": 2, "max_new_tokens": 3000, "ignore_eos": true}}""");
        var solo = _server.PostAsync("/generate", """{"text": "one long choice", "rid": "solo-1", "sampling_params": {"max_new_tokens": 3000, "ignore_eos": true}}""");
        await Eventually.WaitUntilAsync(async () => await _server.Engine.InvokeAsync(e => e.RunningCount) == 3, "both requests run");

        var (status, error) = await _server.PostAsync("/generate", """{"text": "takes a choice's id", "rid": "batch-0", "sampling_params": {"max_new_tokens": 1}}""");
        Assert.Equal(400, status);
        Assert.Equal("rid", error.GetProperty("error").GetProperty("param").GetString());
        Assert.Contains("'batch'", error.GetProperty("error").GetProperty("message").GetString());

        (status, error) = await _server.PostAsync("/generate", """{"text": "its choices take a rid", "rid": "solo", "sampling_params": {"n": 2, "max_new_tokens": 1}}""");
        Assert.Equal(400, status);
        Assert.Equal("rid", error.GetProperty("error").GetProperty("param").GetString());
        Assert.Contains("'solo-1'", error.GetProperty("error").GetProperty("message").GetString());

        Assert.Equal(2, (await _server.PostAsync("/abort_request", """{"abort_all": true}""")).Body.GetProperty("num_aborted_requests").GetInt32());
        var ids = (await batch).Body.EnumerateArray().Select(c => c.GetProperty("meta_info").GetProperty("id").GetString()!).ToArray();
        Assert.Equal(["batch-0", "batch-1"], ids);
        Assert.Equal("solo-1", (await solo).Body.GetProperty("meta_info").GetProperty("id").GetString());
        var (after, body) = await _server.PostAsync("/generate", """{"text": "free again", "rid": "batch-0", "sampling_params": {"max_new_tokens": 1}}""");
        Assert.Equal(200, after);
        Assert.Equal("batch-0", body.GetProperty("meta_info").GetProperty("id").GetString());
    }
}
