using System.Text.Json;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>SGLang's <c>/generate</c>: fields, finish reasons, logprobs, and <c>meta_info.routed_experts</c> in SGLang's layout.</summary>
public sealed class SglangGenerateTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>, IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(model.Directory);

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task Routed_experts_decode_as_slime_does_and_equal_the_engines_rows()
    {
        var prompt = model.Tokenizer.Encode("Slime decodes routed experts with numpy frombuffer int32.");
        var (status, body) = await _server.PostAsync("/generate", $$"""
            {"input_ids": {{JsonSerializer.Serialize(prompt.ToArray())}}, "sampling_params": {"max_new_tokens": 6, "temperature": 0, "top_k": -1},
             "return_routed_experts": true, "return_logprob": true, "rid": "slime-1"}
            """);
        Assert.Equal(200, status);
        var expected = Reference.Run(model.Directory, Reference.Greedy(prompt, 6)).Choices[0];
        var outputIds = Reference.Ints(body.GetProperty("output_ids"));
        Assert.Equal(expected.TokenIds, outputIds);
        Assert.Equal(expected.Text, body.GetProperty("text").GetString());
        var meta = body.GetProperty("meta_info");
        Assert.Equal("slime-1", meta.GetProperty("id").GetString());
        Assert.Equal(prompt.Count, meta.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(outputIds.Length, meta.GetProperty("completion_tokens").GetInt32());
        Assert.Equal("length", meta.GetProperty("finish_reason").GetProperty("type").GetString());
        Assert.Equal(TestServer.WeightsVersion, meta.GetProperty("weight_version").GetString());
        var logprobs = meta.GetProperty("output_token_logprobs").EnumerateArray().ToArray();
        Assert.Equal(outputIds, logprobs.Select(l => l[1].GetInt32()).ToArray());

        // slime: np.frombuffer(b64decode(...), dtype=np.int32).reshape(len(tokens) - 1, num_layers, topk)
        var bytes = Convert.FromBase64String(meta.GetProperty("routed_experts").GetString()!);
        var layers = model.Config.NumHiddenLayers;
        Assert.Equal((prompt.Count + outputIds.Length - 1) * layers * model.Config.NumExpertsPerTok * 4, bytes.Length);
        Assert.Equal(Reference.SglangLayout(expected.Routing!, layers), bytes);
    }

    [Fact]
    public async Task Routed_experts_start_len_skips_the_rows_the_client_holds()
    {
        var prompt = model.Tokenizer.Encode("The second turn of a conversation sends its start.");
        var (status, body) = await _server.PostAsync("/generate", $$"""
            {"input_ids": {{JsonSerializer.Serialize(prompt.ToArray())}}, "sampling_params": {"max_new_tokens": 3, "temperature": 0},
             "return_routed_experts": true, "routed_experts_start_len": 4}
            """);
        Assert.Equal(200, status);
        var expected = Reference.Run(model.Directory, Reference.Greedy(prompt, 3, routingStart: 4)).Choices[0];
        Assert.Equal(Reference.SglangLayout(expected.Routing!, model.Config.NumHiddenLayers), Convert.FromBase64String(body.GetProperty("meta_info").GetProperty("routed_experts").GetString()!));
    }

    [Fact]
    public async Task A_streamed_generate_ends_with_the_routing_and_done()
    {
        var prompt = model.Tokenizer.Encode("Stream me");
        var events = await _server.StreamAsync("/generate", """
            {"text": "Stream me", "sampling_params": {"max_new_tokens": 5, "temperature": 0, "ignore_eos": true}, "stream": true, "return_routed_experts": true}
            """);
        var expected = Reference.Run(model.Directory, Reference.Greedy(prompt, 5)).Choices[0];
        Assert.Equal(6, events.Count);
        Assert.All(events.SkipLast(1), e => Assert.Equal(JsonValueKind.Null, e.GetProperty("meta_info").GetProperty("finish_reason").ValueKind));
        var last = events[^1];
        Assert.Equal(expected.TokenIds, Reference.Ints(last.GetProperty("output_ids")));
        Assert.Equal(expected.Text, last.GetProperty("text").GetString());
        Assert.Equal(Reference.SglangLayout(expected.Routing!, model.Config.NumHiddenLayers), Convert.FromBase64String(last.GetProperty("meta_info").GetProperty("routed_experts").GetString()!));
    }

    [Fact]
    public async Task N_choices_answer_a_list_each_with_its_own_routing()
    {
        var (status, body) = await _server.PostAsync("/generate", """
            {"text": "Sample twice", "sampling_params": {"max_new_tokens": 4, "temperature": 1.0, "n": 2, "seed": 11}, "return_routed_experts": true, "rid": "pair"}
            """);
        Assert.Equal(200, status);
        Assert.Equal(JsonValueKind.Array, body.ValueKind);
        var items = body.EnumerateArray().ToArray();
        Assert.Equal(2, items.Length);
        Assert.Equal(["pair-0", "pair-1"], items.Select(i => i.GetProperty("meta_info").GetProperty("id").GetString()));
        var prompt = model.Tokenizer.Encode("Sample twice").Count;
        foreach (var item in items)
        {
            var rows = prompt + item.GetProperty("output_ids").GetArrayLength() - 1;
            Assert.Equal(rows * model.Config.NumHiddenLayers * model.Config.NumExpertsPerTok * 4, Convert.FromBase64String(item.GetProperty("meta_info").GetProperty("routed_experts").GetString()!).Length);
        }
    }

    [Fact]
    public async Task A_stop_token_id_finishes_with_stop_and_names_it()
    {
        var probe = await _server.PostAsync("/generate", """{"text": "Stop early", "sampling_params": {"max_new_tokens": 3, "temperature": 0}}""");
        var probed = Reference.Ints(probe.Body.GetProperty("output_ids"));
        var second = probed[1];
        var (status, body) = await _server.PostAsync("/generate", $$"""{"text": "Stop early", "sampling_params": {"max_new_tokens": 3, "temperature": 0, "stop_token_ids": [{{second}}]} }""");
        Assert.Equal(200, status);
        var finish = body.GetProperty("meta_info").GetProperty("finish_reason");
        Assert.Equal("stop", finish.GetProperty("type").GetString());
        Assert.Equal(second, finish.GetProperty("matched").GetInt32());
        Assert.Equal(Array.IndexOf(probed, second) + 1, body.GetProperty("output_ids").GetArrayLength());
    }
}
