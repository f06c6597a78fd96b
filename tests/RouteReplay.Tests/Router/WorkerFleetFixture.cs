using System.Text.Json;
using Microsoft.Extensions.Logging;
using RouteReplay.Server.Router;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Router;

/// <summary>
/// Three plain <c>serve</c> workers in real processes (tiny model, CPU), for routers over workers started in this
/// process or as processes; and the answers of one worker alone to the multi-turn workload, the reference every
/// routed run must match.
/// </summary>
public sealed class WorkerFleetFixture : IAsyncLifetime
{
    public const int ConversationCount = 6;

    public const int TurnCount = 3;

    private Task<Reference>? _reference;

    public TinyModelFixture Model { get; } = new();

    public string Cache { get; } = Directory.CreateTempSubdirectory("routereplay-workers-").FullName;

    public CliProcess[] Workers { get; private set; } = [];

    public string[] Serve(int port = 0) =>
    [
        "serve", "--model", Model.Directory, "--served-model-name", "tiny", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        "--num-blocks", "512", "--max-num-seqs", "8", "--weights-version", "test",
    ];

    public static string Name(CliProcess process) => process.Url.ToString().TrimEnd('/');

    public async Task InitializeAsync() => Workers = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => CliProcess.StartAsync(Cache, Serve())));

    /// <summary>A router over the three workers in this process, on a free port; probes only when asked (<c>/health</c>).</summary>
    public async Task<RouterServer> StartRouterAsync(WorkerPolicy policy)
    {
        var router = await RouterServer.CreateAsync(
            new RouterOptions { Workers = [.. Workers.Select(w => w.Url)], Policy = policy, Port = 0, HealthInterval = TimeSpan.FromHours(1) },
            logging => logging.SetMinimumLevel(LogLevel.Warning));
        await router.StartAsync();
        return router;
    }

    /// <summary>Kills worker <paramref name="index"/> if it still runs, and starts it again on its port, its caches empty.</summary>
    public async Task RestartAsync(int index)
    {
        var old = Workers[index];
        if (!old.HasExited)
        {
            old.Kill();
        }
        await old.DisposeAsync();
        Workers[index] = await CliProcess.StartAsync(Cache, Serve(old.Url.Port));
    }

    /// <summary>The workers' prompt tokens and, of those, the ones their prefix caches served, added up, as their <c>/metrics</c> count them.</summary>
    public async Task<(double Prompt, double Cached)> PrefixCountsAsync()
    {
        var metrics = await Task.WhenAll(Workers.Select(w => w.MetricsAsync()));
        return (metrics.Sum(m => m["routereplay_prompt_tokens_total"]), metrics.Sum(m => m["routereplay_cached_prompt_tokens_total"]));
    }

    /// <summary>
    /// The workload's answers from the first worker alone and the prompt tokens it counted, and of those the cached ones
    /// (the most a router can get from prefix caches: one worker holds every conversation's earlier turns); run once,
    /// its cache flushed after.
    /// </summary>
    public Task<Reference> ReferenceAsync()
    {
        lock (Workers)
        {
            return _reference ??= RunReferenceAsync();
        }
    }

    private async Task<Reference> RunReferenceAsync()
    {
        var worker = Workers[0];
        await FlushAsync(worker.Client, servers: null);
        var before = await worker.MetricsAsync();
        var turns = await Conversations.RunAsync(worker.Client, Model.Tokenizer, ConversationCount, TurnCount);
        var after = await worker.MetricsAsync();
        await FlushAsync(worker.Client, servers: null);
        string[] counts = ["routereplay_prompt_tokens_total", "routereplay_cached_prompt_tokens_total"];
        var (prompt, cached) = (after[counts[0]] - before[counts[0]], after[counts[1]] - before[counts[1]]);
        return new Reference(turns, prompt, cached);
    }

    /// <summary>Flushes the prefix caches behind <paramref name="client"/>; through a router, asserts each of its <paramref name="servers"/> flushed.</summary>
    public static async Task FlushAsync(HttpClient client, int? servers)
    {
        using var response = await client.PostAsync("/flush_cache", null);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"/flush_cache: {(int)response.StatusCode} {text}");
        if (servers is { } count)
        {
            using var answer = JsonDocument.Parse(text);
            var flushed = answer.RootElement.GetProperty("servers").EnumerateArray().ToArray();
            Assert.Equal(count, flushed.Length);
            Assert.All(flushed, s => Assert.Equal(200, s.GetProperty("status").GetInt32()));
        }
    }

    public async Task DisposeAsync()
    {
        foreach (var worker in Workers)
        {
            await worker.DisposeAsync();
        }
        Model.Dispose();
        Directory.Delete(Cache, recursive: true);
    }
}

/// <summary>The workload's answers from one worker, and the prompt tokens that worker counted, and of those the cached ones.</summary>
public sealed record Reference(Conversations.Turn[] Turns, double PromptTokens, double CachedTokens);

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class WorkerFleetCollection : ICollectionFixture<WorkerFleetFixture>
{
    public const string Name = "router over worker processes";
}
