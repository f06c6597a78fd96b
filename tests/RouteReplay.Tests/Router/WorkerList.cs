using System.Text.Json;

namespace RouteReplay.Tests.Router;

/// <summary>A router's <c>/list_workers</c>, read.</summary>
public static class WorkerList
{
    public sealed record Entry(string Url, bool Up, int Outstanding, long Requests);

    public static async Task<Entry[]> ReadAsync(HttpClient router)
    {
        using var document = JsonDocument.Parse(await router.GetStringAsync("/list_workers"));
        var urls = document.RootElement.GetProperty("urls").EnumerateArray().Select(u => u.GetString()!).ToArray();
        var workers = document.RootElement.GetProperty("workers").EnumerateArray()
            .Select(w => new Entry(w.GetProperty("url").GetString()!, w.GetProperty("up").GetBoolean(), w.GetProperty("outstanding_requests").GetInt32(), w.GetProperty("requests").GetInt64()))
            .ToArray();
        Assert.Equal(urls, workers.Select(w => w.Url));
        return workers;
    }

    /// <summary>Polls <c>/list_workers</c> until <paramref name="condition"/> holds (fails after 90 s, naming <paramref name="what"/>).</summary>
    public static async Task<Entry[]> WaitUntilAsync(HttpClient router, Func<Entry[], bool> condition, string what)
    {
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            var workers = await ReadAsync(router);
            if (condition(workers))
            {
                return workers;
            }
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(90), $"{what} did not happen within 90 s; workers: {string.Join(", ", workers.Select(w => w.ToString()))}");
            await Task.Delay(10);
        }
    }
}
