using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using RouteReplay.Storage;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>A server with a file block store: its counters in <c>/metrics</c>, and <c>/flush_cache</c> leaving the store alone unless asked.</summary>
public sealed class StoreEndpointTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>, IAsyncLifetime
{
    private readonly string _folder = Directory.CreateTempSubdirectory("routereplay-server-kv-").FullName;
    private TestServer _server = null!;

    public async Task InitializeAsync() =>
        _server = await TestServer.StartAsync(model.Directory, engineOptions: TestServer.DefaultEngineOptions with { KvStore = $"file:{_folder}", KvStoreTimeoutMs = 5000 });

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        Directory.Delete(_folder, recursive: true);
    }

    private string Generate() => $$"""
        {"input_ids": {{JsonSerializer.Serialize(model.Tokenizer.Encode(string.Join(' ', Enumerable.Repeat("blocks persist beyond one process", 10))).ToArray())}},
         "sampling_params": {"max_new_tokens": 4, "temperature": 0}, "return_routed_experts": true}
        """;

    private int StoredValues() => Directory.GetFiles(_folder, "*" + FileBlockStore.Extension, SearchOption.AllDirectories).Length;

    private async Task<double> Metric(string series)
    {
        var text = await _server.Client.GetStringAsync("/metrics");
        var match = Regex.Match(text, "^" + Regex.Escape(series) + " ([0-9.eE+-]+)$", RegexOptions.Multiline);
        Assert.True(match.Success, $"/metrics has no {series}:\n{text}");
        return double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    private Task<bool> WritesDrained() => _server.Engine.InvokeAsync(e => e.StoreTier!.DrainWrites(TimeSpan.FromSeconds(30)));

    [Fact]
    public async Task Flush_cache_keeps_the_store_unless_include_store_and_metrics_count_its_traffic()
    {
        Assert.Equal(200, (await _server.PostAsync("/generate", Generate())).Status);
        Assert.True(await WritesDrained());
        var stored = StoredValues();
        Assert.True(stored >= 2, $"{stored} values written through");
        Assert.True(await Metric("routereplay_kv_store_writes_total{result=\"written\"}") >= stored);
        Assert.True(await Metric("routereplay_kv_store_bytes_total{direction=\"written\"}") > 0);
        Assert.Equal(1, await Metric("routereplay_kv_store_up"));
        var node = $"node=\"file:{Path.GetFullPath(_folder)}\"";
        Assert.Equal(1, await Metric($"routereplay_kv_store_node_up{{{node}}}"));
        Assert.True(await Metric($"routereplay_kv_store_node_writes_total{{{node},result=\"written\"}}") >= stored);

        Assert.Equal(200, (await _server.PostAsync("/flush_cache", "{}")).Status);
        Assert.Equal(stored, StoredValues());
        var again = await _server.PostAsync("/generate", Generate());
        Assert.Equal(200, again.Status);
        Assert.True(again.Body.GetProperty("meta_info").GetProperty("cached_tokens").GetInt32() >= 32, "after a plain flush the prompt comes back from the store");
        Assert.True(await Metric("routereplay_kv_store_blocks_total{result=\"hit\"}") >= 2);
        Assert.True(await Metric($"routereplay_kv_store_node_blocks_total{{{node},result=\"hit\"}}") >= 2);
        Assert.True(await Metric("routereplay_kv_store_bytes_total{direction=\"read\"}") > 0);

        Assert.Equal(200, (await _server.PostAsync("/flush_cache?include_store=true", "{}")).Status);
        Assert.True(await WritesDrained());
        Assert.Equal(0, StoredValues());
        var cold = await _server.PostAsync("/generate", Generate());
        Assert.Equal(200, cold.Status);
        Assert.Equal(0, cold.Body.GetProperty("meta_info").GetProperty("cached_tokens").GetInt32());
    }
}
