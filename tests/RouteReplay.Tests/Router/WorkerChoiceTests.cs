using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using RouteReplay.Disaggregation;
using RouteReplay.Server.Router;

namespace RouteReplay.Tests.Router;

/// <summary>
/// How the router over workers reads a prompt, remembers what it sent to each worker, and chooses: the prompt's
/// leading blocks (token ids, text, chat messages) extend turn by turn; the memory is bounded, the least recently used
/// blocks forgotten tail first; cache-aware choice follows the longest match unless both balance thresholds say that
/// worker is overloaded relative to the least loaded one.
/// </summary>
public sealed class WorkerChoiceTests
{
    private static int[] Ids(int from, int count) => [.. Enumerable.Range(from, count)];

    private static PromptKey Read(string path, string json) => PromptKey.Read(path, Encoding.UTF8.GetBytes(json))!;

    private static Worker NewWorker(int number, int maxTreeSize = 1 << 16) =>
        new(new Upstream(ServerRole.Both, new Uri($"http://127.0.0.1:{9000 + number}"), number, NullLogger.Instance), maxTreeSize);

    private static void Load(Worker worker, int requests)
    {
        for (var i = 0; i < requests; i++)
        {
            worker.Server.Enter();
        }
    }

    [Fact]
    public void Each_turn_of_a_conversation_shares_the_previous_turns_full_blocks_whatever_form_its_prompt_takes()
    {
        var turn1 = PromptKey.Of(Ids(1, 40));
        var turn2 = PromptKey.Of([.. Ids(1, 40), .. Ids(500, 30)]);
        Assert.Equal(2, turn1.Blocks.Length);
        Assert.Equal(4, turn2.Blocks.Length);
        Assert.Equal(turn1.Blocks, turn2.Blocks[..2]);
        Assert.NotEqual(turn1.Blocks[1], PromptKey.Of([.. Ids(1, 31), 999]).Blocks[1]);

        var generate = Read("/generate", """{"input_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]}""");
        Assert.Equal(PromptKey.Of(Ids(1, 16)).Blocks, generate.Blocks);
        Assert.Equal(generate.Blocks, Read("/v1/completions", """{"prompt": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]}""").Blocks);
        var text = new string('x', 130);
        Assert.Equal(PromptKey.Of(text).Blocks, Read("/generate", $$"""{"text": "{{text}}"}""").Blocks);
        Assert.Equal(2, Read("/v1/completions", $$"""{"prompt": "{{text}}"}""").Blocks.Length);

        var first = $$"""{"role": "user", "content": "{{text}}"}""";
        var chat1 = Read("/v1/chat/completions", $$"""{"messages": [{{first}}]}""");
        var chat2 = Read("/v1/chat/completions", $$"""{"messages": [{{first}}, {"role": "assistant", "content": "{{text}}"}, {"role": "user", "content": [{"type": "text", "text": "more"}]}]}""");
        Assert.Equal(chat1.Blocks, chat2.Blocks[..chat1.Blocks.Length]);
        Assert.True(chat2.Blocks.Length > chat1.Blocks.Length);

        Assert.Null(PromptKey.Read("/generate", "not json"u8));
        Assert.Null(PromptKey.Read("/generate", """{"input_ids": [1, "two"]}"""u8));
        Assert.Null(PromptKey.Read("/v1/chat/completions", """{"messages": "hello"}"""u8));
    }

    [Fact]
    public void A_worker_remembers_at_most_max_tree_size_blocks_forgetting_the_least_recently_used_tails_first()
    {
        var prefixes = new RecentPrefixes(capacity: 6);
        var old = PromptKey.Of(Ids(0, 64));
        var recent = PromptKey.Of(Ids(1000, 64));
        prefixes.Remember(old);
        prefixes.Remember(recent);

        Assert.Equal(6, prefixes.Count);
        Assert.Equal(4, prefixes.Match(recent));
        Assert.Equal(2, prefixes.Match(old));

        prefixes.Remember(old);
        Assert.Equal(4, prefixes.Match(old));
        Assert.Equal(2, prefixes.Match(recent));
        var longer = PromptKey.Of(Ids(5000, 16 * 10));
        prefixes.Remember(longer);
        Assert.Equal(6, prefixes.Count);
        Assert.Equal(6, prefixes.Match(longer));
        Assert.Equal(0, prefixes.Match(old));
    }

    [Fact]
    public void Cache_aware_choice_follows_the_longest_match_unless_that_worker_is_overloaded_by_both_thresholds()
    {
        var workers = new[] { NewWorker(1), NewWorker(2), NewWorker(3) };
        var chooser = new WorkerChooser(new RouterOptions { Workers = [.. workers.Select(w => w.Server.BaseUri)], BalanceAbsThreshold = 4, BalanceRelThreshold = 1.5 });
        var none = new HashSet<Worker>();
        var turn1 = PromptKey.Of(Ids(1, 40));
        var turn2 = PromptKey.Of([.. Ids(1, 40), .. Ids(100, 40)]);
        workers[0].Chosen(ChoiceReason.LeastLoaded, PromptKey.Of(Ids(1, 16)));
        workers[1].Chosen(ChoiceReason.LeastLoaded, turn1);

        Assert.Equal((workers[1], ChoiceReason.CacheHit), chooser.Choose(workers, turn2, none));

        Load(workers[1], 10);
        var balanced = chooser.Choose(workers, turn2, none)!.Value;
        Assert.Equal(ChoiceReason.Balance, balanced.Reason);
        Assert.NotEqual(workers[1], balanced.Worker);
        Load(workers[0], 7);
        Load(workers[2], 7);
        Assert.Equal((workers[1], ChoiceReason.CacheHit), chooser.Choose(workers, turn2, none));
        var lowAbs = new WorkerChooser(new RouterOptions { Workers = [.. workers.Select(w => w.Server.BaseUri)], BalanceAbsThreshold = 1, BalanceRelThreshold = 1.5 });
        Assert.Equal((workers[1], ChoiceReason.CacheHit), lowAbs.Choose(workers, turn2, none));
        var lowRel = new WorkerChooser(new RouterOptions { Workers = [.. workers.Select(w => w.Server.BaseUri)], BalanceAbsThreshold = 1, BalanceRelThreshold = 1.2 });
        Assert.Equal(ChoiceReason.Balance, lowRel.Choose(workers, turn2, none)!.Value.Reason);

        var fresh = chooser.Choose(workers, PromptKey.Of(Ids(7000, 40)), none)!.Value;
        Assert.Equal(ChoiceReason.LeastLoaded, fresh.Reason);
        Assert.NotEqual(workers[1], fresh.Worker);
        Assert.Equal((workers[2], ChoiceReason.LeastLoaded), chooser.Choose(workers, turn2, new HashSet<Worker> { workers[1], workers[0] }));

        workers[1].Server.MarkDown("test");
        Assert.Equal((workers[0], ChoiceReason.CacheHit), chooser.Choose(workers, turn2, none));
        workers[1].Server.MarkUp();
        Assert.Equal(0, workers[1].Match(turn2));
        Assert.Equal(0, workers[1].Prefixes.Count);
        Assert.Null(chooser.Choose(workers, turn2, workers.ToHashSet()));
    }

    [Fact]
    public void Among_workers_that_match_equally_cache_aware_choice_takes_the_least_loaded_and_a_prompt_it_cannot_read_goes_to_the_least_loaded()
    {
        var workers = new[] { NewWorker(1), NewWorker(2), NewWorker(3) };
        var chooser = new WorkerChooser(new RouterOptions { Workers = [.. workers.Select(w => w.Server.BaseUri)] });
        var none = new HashSet<Worker>();
        var turn1 = PromptKey.Of(Ids(1, 40));
        workers[0].Chosen(ChoiceReason.LeastLoaded, turn1);
        workers[1].Chosen(ChoiceReason.LeastLoaded, turn1);
        Load(workers[0], 2);
        Load(workers[1], 1);

        Assert.Equal((workers[1], ChoiceReason.CacheHit), chooser.Choose(workers, PromptKey.Of(Ids(1, 64)), none));
        Assert.Equal((workers[2], ChoiceReason.LeastLoaded), chooser.Choose(workers, null, none));
        Assert.Equal((workers[2], ChoiceReason.LeastLoaded), chooser.Choose(workers, PromptKey.Of(Ids(1, 15)), none));
    }

    [Fact]
    public void Round_robin_takes_each_up_worker_in_turn_and_least_load_the_one_with_fewest_requests_in_flight_whatever_the_prompt_matches()
    {
        var workers = new[] { NewWorker(1), NewWorker(2), NewWorker(3) };
        RouterOptions Options(WorkerPolicy policy) => new() { Workers = [.. workers.Select(w => w.Server.BaseUri)], Policy = policy };
        var none = new HashSet<Worker>();
        var prompt = PromptKey.Of(Ids(1, 64));
        workers[0].Chosen(ChoiceReason.LeastLoaded, prompt);

        var roundRobin = new WorkerChooser(Options(WorkerPolicy.RoundRobin));
        var turns = Enumerable.Range(0, 6).Select(_ => roundRobin.Choose(workers, prompt, none)!.Value).ToArray();
        Assert.All(turns, t => Assert.Equal(ChoiceReason.RoundRobin, t.Reason));
        Assert.All(turns.Chunk(3), three => Assert.Equal(workers.ToHashSet(), three.Select(t => t.Worker).ToHashSet()));
        Assert.Equal(turns[..3].Select(t => t.Worker), turns[3..].Select(t => t.Worker));
        workers[1].Server.MarkDown("test");
        Assert.DoesNotContain(workers[1], Enumerable.Range(0, 4).Select(_ => roundRobin.Choose(workers, prompt, none)!.Value.Worker));
        workers[1].Server.MarkUp();

        var leastLoad = new WorkerChooser(Options(WorkerPolicy.LeastLoad));
        Load(workers[0], 1);
        Load(workers[1], 2);
        Assert.Equal((workers[2], ChoiceReason.LeastLoaded), leastLoad.Choose(workers, prompt, none));
        Load(workers[2], 3);
        Assert.Equal((workers[0], ChoiceReason.LeastLoaded), leastLoad.Choose(workers, prompt, none));
    }
}
