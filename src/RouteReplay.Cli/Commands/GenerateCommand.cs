using System.CommandLine;
using System.Diagnostics;
using RouteReplay.Engine;
using RouteReplay.Model.Tokenization;

namespace RouteReplay.Cli.Commands;

internal static class GenerateCommand
{
    /// <summary>The most tokens a choice generates when neither <c>--max-tokens</c> nor the prompts file says.</summary>
    private const int DefaultMaxTokens = 32;

    private static readonly Dictionary<string, string> SamplingFlags = new()
    {
        ["temperature"] = "--temperature",
        ["top_p"] = "--top-p",
        ["top_k"] = "--top-k",
        ["max_tokens"] = "--max-tokens",
    };

    public static Command Create()
    {
        var model = new ModelFlags();
        var prompt = new Option<string>("--prompt") { Description = "Prompt text.", DefaultValueFactory = _ => "The capital of France is" };
        var promptsFile = new Option<FileInfo?>("--prompts-file") { Description = "JSONL of requests (prompt or messages; optional max_tokens, seed, n, temperature, top_p, top_k), run concurrently." };
        var chat = new Option<bool>("--chat") { Description = "Format --prompt as one user message with the model's chat template." };
        var system = new Option<string?>("--system") { Description = "With --chat: a system message before the prompt." };
        var noThinking = new Option<bool>("--no-thinking") { Description = "With --chat: the template's enable_thinking=false (an empty think block)." };
        var maxTokens = Flags.Int("--max-tokens", $"Most tokens to generate per choice (default {DefaultMaxTokens}, or what --max-model-len leaves; given, prompt plus it must fit --max-model-len).", DefaultMaxTokens);
        var temperature = Flags.Float("--temperature", "Sampling temperature; 0 is greedy.", 0f);
        var topP = Flags.Float("--top-p", "Nucleus sampling mass in (0, 1].", 1f);
        var topK = Flags.Int("--top-k", "Sample among the k most likely tokens; 0 means all.", 0);
        var seed = Flags.OptionalUInt64("--seed", "Seed for reproducible sampling (choice i uses seed + i).");
        var routingOut = new Option<FileInfo?>("--routing-out") { Description = "Single prompt: write the routing rows as a NumPy .npy of shape (T-1, L_moe, K)." };
        var routingDir = new Option<DirectoryInfo?>("--routing-dir") { Description = "Prompts file: write one .npy per request and choice, named <line>-<choice>.npy." };
        var outputJsonl = new Option<FileInfo?>("--output-jsonl") { Description = "Write one JSON line per request and choice: tokens, text, finish reason, usage." };
        var statsJson = new Option<FileInfo?>("--stats-json") { Description = "Write the engine counters as JSON." };
        var flags = new EngineFlags();
        var command = new Command("generate", "Generate completions and write their expert routing.")
        {
            prompt, promptsFile, chat, system, noThinking, maxTokens, temperature, topP, topK, seed, routingOut, routingDir, outputJsonl, statsJson,
        };
        model.AddTo(command);
        flags.AddTo(command);
        command.SetAction(parse =>
        {
            var defaults = new SamplingParams
            {
                MaxTokens = parse.GetValue(maxTokens),
                Temperature = parse.GetValue(temperature),
                TopP = parse.GetValue(topP),
                TopK = parse.GetValue(topK),
                Seed = parse.GetValue(seed),
            };
            ValidateFlags(defaults);
            var options = flags.Read(parse);
            var file = parse.GetValue(promptsFile)?.FullName;
            var single = file is null;
            CheckModeFlags(parse, single, prompt, chat, system, noThinking, routingOut, routingDir);
            OutputPaths.CheckFile(parse.GetValue(routingOut)?.FullName, "--routing-out");
            OutputPaths.CheckFolder(parse.GetValue(routingDir)?.FullName, "--routing-dir");
            OutputPaths.CheckFile(parse.GetValue(outputJsonl)?.FullName, "--output-jsonl");
            OutputPaths.CheckFile(parse.GetValue(statsJson)?.FullName, "--stats-json");
            var lines = single ? null : PromptsFile.Read(file!);
            var source = model.Read(parse);
            var explicitMaxTokens = Flags.IsGiven(parse, maxTokens) ? defaults.MaxTokens : null;

            using var engine = source.Load(options, Console.Error);
            Console.Error.WriteLine($"routereplay generate: {engine.PoolSizes}");
            var tokenizer = engine.Tokenizer;
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
                var ids = tokenizer.Encode(text);
                var budget = Budget(ids.Count, explicitMaxTokens, "--max-tokens", options.MaxModelLen, "");
                requests = [(0, new EngineRequest { RequestId = "line-0", PromptTokenIds = ids, Sampling = defaults with { MaxTokens = budget } })];
            }
            else
            {
                requests = lines!.Select(line => (line.Line, ToRequest(line, tokenizer, defaults, explicitMaxTokens, options.MaxModelLen, file!))).ToList();
            }

            var collector = new ResultCollector(single ? Console.Out : null);
            foreach (var (line, request) in requests)
            {
                try
                {
                    engine.AddRequest(request, collector);
                }
                catch (ArgumentException e) when (!single)
                {
                    throw new ArgumentException($"--prompts-file {file} line {line + 1}: {UserErrors.Message(e)}", "prompts-file", e);
                }
            }
            var clock = Stopwatch.StartNew();
            engine.RunToCompletion();
            var elapsed = clock.Elapsed;
            engine.StoreTier?.DrainWrites(TimeSpan.FromSeconds(30));
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

    /// <summary>Checks the sampling flags, naming the flag the user wrote.</summary>
    private static void ValidateFlags(SamplingParams sampling)
    {
        try
        {
            sampling.Validate();
        }
        catch (ArgumentException e) when (e.ParamName is { } field && SamplingFlags.TryGetValue(field, out var flag))
        {
            var message = UserErrors.Message(e);
            throw new ArgumentException(message.StartsWith(field, StringComparison.Ordinal) ? flag + message[field.Length..] : $"{flag}: {message}", flag.TrimStart('-'), e);
        }
    }

    /// <summary>Refuses flags that the chosen mode (one --prompt, or a prompts file) would silently ignore.</summary>
    private static void CheckModeFlags(ParseResult parse, bool single, Option<string> prompt, Option<bool> chat, Option<string?> system, Option<bool> noThinking, Option<FileInfo?> routingOut, Option<DirectoryInfo?> routingDir)
    {
        void Refuse(string message, string flag) => throw new ArgumentException(message, flag.TrimStart('-'));
        if (!single && Flags.IsGiven(parse, prompt))
        {
            Refuse("give --prompt or --prompts-file, not both", "--prompt");
        }
        if (!single && parse.GetValue(chat))
        {
            Refuse("--chat formats --prompt; a prompts file gives chat requests as lines with 'messages'", "--chat");
        }
        if (!parse.GetValue(chat) && parse.GetValue(system) is not null)
        {
            Refuse("--system applies only with --chat (it adds a system message to the chat-formatted --prompt)", "--system");
        }
        if (!parse.GetValue(chat) && parse.GetValue(noThinking))
        {
            Refuse("--no-thinking applies only with --chat (it sets the chat template's enable_thinking=false)", "--no-thinking");
        }
        if (!single && parse.GetValue(routingOut) is not null)
        {
            Refuse("--routing-out writes the routing of a single --prompt; with --prompts-file use --routing-dir", "--routing-out");
        }
        if (single && parse.GetValue(routingDir) is not null)
        {
            Refuse("--routing-dir writes one file per request of --prompts-file; with a single --prompt use --routing-out", "--routing-dir");
        }
    }

    private static EngineRequest ToRequest(PromptLine line, TextTokenizer tokenizer, SamplingParams defaults, int? explicitMaxTokens, int maxModelLen, string file)
    {
        var text = line.Prompt ?? tokenizer.ApplyChatTemplate(line.Messages!, addGenerationPrompt: true);
        var ids = tokenizer.Encode(text);
        var context = $"--prompts-file {file} line {line.Line + 1}: ";
        var budget = line.MaxTokens is { } own
            ? Budget(ids.Count, own, "max_tokens", maxModelLen, context)
            : Budget(ids.Count, explicitMaxTokens, "--max-tokens", maxModelLen, context);
        var sampling = defaults with
        {
            MaxTokens = budget,
            Seed = line.Seed ?? defaults.Seed,
            Temperature = line.Temperature ?? defaults.Temperature,
            TopP = line.TopP ?? defaults.TopP,
            TopK = line.TopK is { } k ? Math.Max(k, 0) : defaults.TopK,
        };
        try
        {
            sampling.Validate();
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException(context + UserErrors.Message(e), "prompts-file", e);
        }
        return new EngineRequest { RequestId = $"line-{line.Line}", PromptTokenIds = ids, Sampling = sampling, N = line.N };
    }

    /// <summary>
    /// The token budget of one request: an explicit one must fit the model length with the prompt (an error naming
    /// <paramref name="field"/> otherwise); without one, the default, shortened to what the model length leaves.
    /// </summary>
    private static int Budget(int promptTokens, int? explicitMaxTokens, string field, int maxModelLen, string context)
    {
        if (explicitMaxTokens is not { } budget)
        {
            return Math.Max(1, Math.Min(DefaultMaxTokens, maxModelLen - promptTokens));
        }
        if (promptTokens < maxModelLen)
        {
            try
            {
                EngineRequest.CheckFitsModelLength(promptTokens, budget, maxModelLen, field);
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException(context + UserErrors.Message(e), field.TrimStart('-'), e);
            }
        }
        return budget;
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
            (engine.StoreTier is { Stats: var store } ? $"kv_store_hits={store.Hits} kv_store_writes={store.Writes} " : "") +
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
