using System.CommandLine;
using System.Diagnostics;
using RouteReplay.Engine;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.Cli.Commands;

internal static class GenerateCommand
{
    public static Command Create()
    {
        var prompt = new Option<string>("--prompt") { Description = "Prompt text.", DefaultValueFactory = _ => "The capital of France is" };
        var promptsFile = new Option<FileInfo?>("--prompts-file") { Description = "JSONL of requests (prompt or messages; optional max_tokens, seed, n, temperature, top_p, top_k), run concurrently." };
        var chat = new Option<bool>("--chat") { Description = "Format the prompt as one user message with the model's chat template." };
        var system = new Option<string?>("--system") { Description = "With --chat: a system message before the prompt." };
        var noThinking = new Option<bool>("--no-thinking") { Description = "With --chat: the template's enable_thinking=false (an empty think block)." };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most tokens to generate per choice.", DefaultValueFactory = _ => 32 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature; 0 is greedy.", DefaultValueFactory = _ => 0f };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling mass in (0, 1].", DefaultValueFactory = _ => 1f };
        var topK = new Option<int>("--top-k") { Description = "Sample among the k most likely tokens; 0 means all.", DefaultValueFactory = _ => 0 };
        var seed = new Option<ulong?>("--seed") { Description = "Seed for reproducible sampling (choice i uses seed + i)." };
        var routingOut = new Option<FileInfo?>("--routing-out") { Description = "Single prompt: write the routing rows as a NumPy .npy of shape (T-1, L_moe, K)." };
        var routingDir = new Option<DirectoryInfo?>("--routing-dir") { Description = "Prompts file: write one .npy per request and choice, named <line>-<choice>.npy." };
        var outputJsonl = new Option<FileInfo?>("--output-jsonl") { Description = "Write one JSON line per request and choice: tokens, text, finish reason, usage." };
        var statsJson = new Option<FileInfo?>("--stats-json") { Description = "Write the engine counters as JSON." };
        var flags = new EngineFlags();
        var modelFlags = new ModelFlags();
        var command = new Command("generate", "Generate completions and write their expert routing.")
        {
            prompt, promptsFile, chat, system, noThinking, maxTokens, temperature, topP, topK, seed, routingOut, routingDir, outputJsonl, statsJson,
        };
        modelFlags.AddTo(command);
        flags.AddTo(command);
        command.SetAction(parse =>
        {
            var sampling = new SamplingParams
            {
                MaxTokens = parse.GetValue(maxTokens),
                Temperature = parse.GetValue(temperature),
                TopP = parse.GetValue(topP),
                TopK = parse.GetValue(topK),
                Seed = parse.GetValue(seed),
            };
            sampling.Validate();
            var options = flags.Read(parse);
            using var engine = modelFlags.Read(parse).Load(options, Console.Error);
            var tokenizer = engine.Tokenizer;
            var file = parse.GetValue(promptsFile);
            var single = file is null;
            List<(int Line, EngineRequest Request)> requests;
            if (single)
            {
                var text = parse.GetValue(prompt)!;
                if (parse.GetValue(chat))
                {
                    var messages = new List<ChatMessage>();
                    if (parse.GetValue(system) is { } systemText)
                    {
                        messages.Add(new ChatMessage("system", systemText));
                    }
                    messages.Add(new ChatMessage("user", text));
                    text = tokenizer.ApplyChatTemplate(messages, addGenerationPrompt: true, enableThinking: !parse.GetValue(noThinking));
                }
                requests = [(0, new EngineRequest { RequestId = "line-0", PromptTokenIds = tokenizer.Encode(text), Sampling = sampling })];
            }
            else
            {
                requests = PromptsFile.Read(file!.FullName, tokenizer, sampling);
            }

            var collector = new ResultCollector(single ? Console.Out : null);
            foreach (var (_, request) in requests)
            {
                engine.AddRequest(request, collector);
            }
            var clock = Stopwatch.StartNew();
            engine.RunToCompletion();
            var elapsed = clock.Elapsed;
            if (single)
            {
                Console.WriteLine();
            }

            var results = requests.Select(r => (r.Line, Result: collector.Results[r.Request.RequestId])).ToList();
            var failed = results.Where(r => r.Result.Error is not null).ToList();
            foreach (var (line, result) in failed)
            {
                Console.Error.WriteLine($"error: request on line {line + 1} failed: {result.Error!.Message}");
            }
            OutputFiles.Write(results, engine.RoutingFormat, single ? parse.GetValue(routingOut)?.FullName : null, parse.GetValue(routingDir)?.FullName, parse.GetValue(outputJsonl)?.FullName);
            if (parse.GetValue(statsJson) is { } stats)
            {
                OutputFiles.WriteStats(stats.FullName, engine, elapsed);
            }
            Console.Error.WriteLine(Summary(results.Select(r => r.Result).ToList(), engine, collector.FirstTokenAt, elapsed));
            return failed.Count == 0 ? 0 : 1;
        });
        return command;
    }

    private static string Summary(List<RequestResult> results, LlmEngine engine, TimeSpan firstTokenAt, TimeSpan elapsed)
    {
        var prompt = results.Sum(r => r.Usage.PromptTokens);
        var generated = results.Sum(r => r.Usage.CompletionTokens);
        var first = results[0].Choices[0];
        var finish = first.FinishReason.ToString().ToLowerInvariant();
        var decodeSeconds = (elapsed - firstTokenAt).TotalSeconds;
        var decodeRate = generated > results.Count && decodeSeconds > 0 ? (generated - results.Count) / decodeSeconds : 0;
        return $"requests={results.Count} prompt_tokens={prompt} generated_tokens={generated} cached_tokens={results.Sum(r => r.Usage.CachedPromptTokens)} " +
            $"finish={finish} moe_layers={engine.RoutingFormat.MoeLayerCount} top_k={engine.RoutingFormat.TopK} " +
            $"routing_rows={results.Sum(r => r.Choices.Sum(c => c.Routing?.RowCount ?? 0))} " +
            $"preemptions_swap={engine.Stats.PreemptionsBySwap} preemptions_recompute={engine.Stats.PreemptionsByRecompute} " +
            $"prefill_tokens_per_s={prompt / firstTokenAt.TotalSeconds:F1} decode_tokens_per_s={decodeRate:F1} tokens_per_s={generated / elapsed.TotalSeconds:F1}";
    }

    /// <summary>Keeps every result; in single-prompt mode also echoes the text as it streams.</summary>
    private sealed class ResultCollector(TextWriter? echo) : IRequestSink
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();

        public Dictionary<string, RequestResult> Results { get; } = [];

        public TimeSpan FirstTokenAt { get; private set; }

        public void OnDelta(StreamDelta delta)
        {
            if (FirstTokenAt == TimeSpan.Zero)
            {
                FirstTokenAt = _clock.Elapsed;
            }
            echo?.Write(delta.Text);
        }

        public void OnFinished(RequestResult result) => Results[result.RequestId] = result;
    }
}
