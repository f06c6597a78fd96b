using System.Text;
using System.Text.Json;
using RouteReplay.Server.Disaggregation;
using RouteReplay.Server.Router;
using RouteReplay.Tests.Support;
using Xunit.Abstractions;

namespace RouteReplay.Tests.Router;

/// <summary>
/// A router over three <c>serve</c> workers in real processes, under a multi-turn rollout workload (conversations at
/// once, each turn's prompt the previous prompt, its answer and a new user message): cache-aware choice keeps each
/// conversation on one worker, so the workers' prefix caches serve as much as one worker alone would, far more than
/// under round robin; answers are the same whichever worker computes them; a worker killed in the middle of the run
/// fails no request (its requests are sent to another worker), and restarted it takes requests again.
/// </summary>
[Collection(WorkerFleetCollection.Name)]
public sealed class DataParallelRouterTests(WorkerFleetFixture fleet, ITestOutputHelper output)
{
    private static HttpClient Client(RouterServer router) => new() { BaseAddress = router.BaseAddress, Timeout = TimeSpan.FromMinutes(3) };

    private static void AssertSameAnswers(Reference reference, Conversations.Turn[] turns) =>
        Assert.Equal(reference.Turns.Select(t => (t.Conversation, t.Index, t.Answer)), turns.Select(t => (t.Conversation, t.Index, t.Answer)));

    private static async Task<(JsonElement Answer, string Worker, string Choice)> GenerateAsync(HttpClient client, string text)
    {
        using var response = await client.PostAsync("/generate", new StringContent(
            $$$"""{"text": "{{{text}}}", "sampling_params": {"max_new_tokens": 4, "temperature": 0, "ignore_eos": true}}""", Encoding.UTF8, "application/json"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode} {body}");
        using var document = JsonDocument.Parse(body);
        return (document.RootElement.Clone(), string.Join(",", response.Headers.GetValues(FleetHeaders.Worker)), string.Join(",", response.Headers.GetValues(FleetHeaders.Choice)));
    }

    [Fact]
    public async Task Cache_aware_choice_keeps_each_rollout_on_one_worker_and_hits_the_prefix_caches_as_one_worker_would_far_more_than_round_robin()
    {
        var reference = await fleet.ReferenceAsync();
        var rates = new Dictionary<WorkerPolicy, (double Prompt, double Cached)>();
        foreach (var policy in new[] { WorkerPolicy.CacheAware, WorkerPolicy.RoundRobin })
        {
            await using var router = await fleet.StartRouterAsync(policy);
            using var client = Client(router);
            await WorkerFleetFixture.FlushAsync(client, servers: 3);
            var before = await fleet.PrefixCountsAsync();

            var turns = await Conversations.RunAsync(client, fleet.Model.Tokenizer, WorkerFleetFixture.ConversationCount, WorkerFleetFixture.TurnCount);

            var after = await fleet.PrefixCountsAsync();
            rates[policy] = (after.Prompt - before.Prompt, after.Cached - before.Cached);
            AssertSameAnswers(reference, turns);
            if (policy == WorkerPolicy.CacheAware)
            {
                foreach (var conversation in turns.GroupBy(t => t.Conversation))
                {
                    var first = conversation.First();
                    Assert.Equal("least_loaded", first.Choice);
                    Assert.All(conversation.Skip(1), t => Assert.Equal(("cache_hit", first.Worker), (t.Choice, t.Worker)));
                }
                Assert.True(turns.Select(t => t.Worker).Distinct().Count() > 1, "every conversation went to one worker");
            }
            else
            {
                Assert.All(turns, t => Assert.Equal("round_robin", t.Choice));
                Assert.Equal(3, turns.Select(t => t.Worker).Distinct().Count());
            }
        }

        var (aware, roundRobin) = (rates[WorkerPolicy.CacheAware], rates[WorkerPolicy.RoundRobin]);
        output.WriteLine($"prefix-hit rate: one worker {reference.CachedTokens / reference.PromptTokens:P1}, cache_aware {aware.Cached / aware.Prompt:P1}, round_robin {roundRobin.Cached / roundRobin.Prompt:P1} ({reference.PromptTokens} prompt tokens)");
        Assert.Equal(reference.PromptTokens, aware.Prompt);
        Assert.Equal(reference.PromptTokens, roundRobin.Prompt);
        Assert.True(reference.CachedTokens > 0.3 * reference.PromptTokens, $"the workload's later turns share too little with the earlier ones: {reference.CachedTokens} of {reference.PromptTokens}");
        Assert.Equal(reference.CachedTokens, aware.Cached);
        Assert.True(aware.Cached >= 1.5 * roundRobin.Cached, $"cache_aware hit {aware.Cached} prompt tokens, round_robin {roundRobin.Cached}");
    }

    [Fact]
    public async Task A_worker_killed_mid_run_fails_no_request_its_requests_are_sent_to_another_and_restarted_it_takes_requests_again()
    {
        var reference = await fleet.ReferenceAsync();
        await using var router = await fleet.StartRouterAsync(WorkerPolicy.CacheAware);
        using var client = Client(router);
        await WorkerFleetFixture.FlushAsync(client, servers: 3);
        const string Probe = "A prompt that marks the worker to kill: it holds this prefix, so the next turn goes there too.";
        var (_, victimName, _) = await GenerateAsync(client, Probe);
        var victim = Array.FindIndex(fleet.Workers, w => WorkerFleetFixture.Name(w) == victimName);

        var run = Conversations.RunAsync(client, fleet.Model.Tokenizer, WorkerFleetFixture.ConversationCount, WorkerFleetFixture.TurnCount);
        try
        {
            await WorkerList.WaitUntilAsync(client, w => w.Sum(x => x.Requests) >= 1 + WorkerFleetFixture.ConversationCount + 2, "second turns sent");
            fleet.Workers[victim].Freeze();
            var sentBefore = (await WorkerList.ReadAsync(client)).Single(w => w.Url == victimName).Requests;
            var followUp = GenerateAsync(client, Probe + " And a second turn, sent to the frozen worker.");
            await WorkerList.WaitUntilAsync(client, w => w.Single(x => x.Url == victimName).Requests > sentBefore, "a request sent to the frozen worker");
            fleet.Workers[victim].Kill();

            var (answer, worker, choice) = await followUp;
            var turns = await run;

            Assert.NotEqual(victimName, worker);
            Assert.Equal("least_loaded", choice);
            Assert.Equal(4, answer.GetProperty("output_ids").GetArrayLength());
            AssertSameAnswers(reference, turns);
            var metrics = await CliProcess.MetricsAsync(client);
            Assert.True(metrics[$"routereplay_router_worker_retries_total{{server=\"{victimName}\"}}"] >= 1, "no request was retried");
            Assert.Equal(0, metrics[$"routereplay_router_server_up{{role=\"worker\",server=\"{victimName}\"}}"]);
            Assert.DoesNotContain(metrics, m => m.Key.StartsWith("routereplay_router_responses_total", StringComparison.Ordinal) && !m.Key.EndsWith("code=\"200\"}", StringComparison.Ordinal));
        }
        finally
        {
            await fleet.RestartAsync(victim);
        }

        using (var health = await client.GetAsync("/health"))
        {
            Assert.Equal(200, (int)health.StatusCode);
        }
        Assert.True((await WorkerList.ReadAsync(client)).Single(w => w.Url == victimName).Up, "the restarted worker is still down after a health check");
        var landed = new List<string>();
        for (var i = 0; i < 6 && !landed.Contains(victimName); i++)
        {
            landed.Add((await GenerateAsync(client, $"After the restart, fresh prompt number {i}, which no worker has seen before.")).Worker);
        }
        Assert.Contains(victimName, landed);
    }
}
