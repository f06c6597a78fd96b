using System.CommandLine;
using System.Diagnostics;
using RouteReplay.Engine;
using RouteReplay.Model;
using RouteReplay.Routing;

namespace RouteReplay.Cli.Commands;

internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<DirectoryInfo?>("--model") { Description = "Checkpoint folder (Hugging Face format). Default: the built-in tiny preset." };
        var prompt = new Option<string>("--prompt") { Description = "Prompt text.", DefaultValueFactory = _ => "The capital of France is" };
        var chat = new Option<bool>("--chat") { Description = "Format the prompt as one user message with the model's chat template." };
        var system = new Option<string?>("--system") { Description = "With --chat: a system message before the prompt." };
        var noThinking = new Option<bool>("--no-thinking") { Description = "With --chat: the template's enable_thinking=false (an empty think block)." };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most tokens to generate.", DefaultValueFactory = _ => 32 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature; 0 is greedy.", DefaultValueFactory = _ => 0f };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling mass in (0, 1].", DefaultValueFactory = _ => 1f };
        var topK = new Option<int>("--top-k") { Description = "Sample among the k most likely tokens; 0 means all.", DefaultValueFactory = _ => 0 };
        var seed = new Option<ulong?>("--seed") { Description = "Seed for reproducible sampling." };
        var routingOut = new Option<FileInfo?>("--routing-out") { Description = "Write the routing rows as a NumPy .npy of shape (T-1, L_moe, K)." };
        var maxModelLen = new Option<int>("--max-model-len") { Description = "Most tokens (prompt plus output) of a request.", DefaultValueFactory = _ => 4096 };
        var blockSize = new Option<int>("--block-size") { Description = "Tokens per KV-cache block.", DefaultValueFactory = _ => 16 };
        var command = new Command("generate", "Generate a completion on the CPU and write its expert routing.")
        {
            model, prompt, chat, system, noThinking, maxTokens, temperature, topP, topK, seed, routingOut, maxModelLen, blockSize,
        };
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
            var size = parse.GetValue(blockSize);
            var length = parse.GetValue(maxModelLen);
            if (size < 1)
            {
                throw new ArgumentException($"--block-size must be >= 1, got {size}");
            }
            if (length < 2)
            {
                throw new ArgumentException($"--max-model-len must be >= 2, got {length}");
            }
            var dir = parse.GetValue(model)?.FullName ?? DefaultModel.EnsureTinyModel(Console.Error);
            using var loaded = LoadedModel.LoadCpu(dir, (length + size - 1) / size, size);
            var text = parse.GetValue(prompt)!;
            if (parse.GetValue(chat))
            {
                var messages = new List<ChatMessage>();
                if (parse.GetValue(system) is { } systemText)
                {
                    messages.Add(new ChatMessage("system", systemText));
                }
                messages.Add(new ChatMessage("user", text));
                text = loaded.Tokenizer.ApplyChatTemplate(messages, addGenerationPrompt: true, enableThinking: !parse.GetValue(noThinking));
            }
            var promptIds = loaded.Tokenizer.Encode(text);
            var generator = new SingleSequenceGenerator(loaded.Backend, loaded.Tokenizer.TokenCount, loaded.EosTokenIds);
            var detokenizer = new StreamingDetokenizer(loaded.Tokenizer);
            var clock = Stopwatch.StartNew();
            var firstTokenAt = TimeSpan.Zero;
            var result = generator.Generate(promptIds, sampling, token =>
            {
                if (firstTokenAt == TimeSpan.Zero)
                {
                    firstTokenAt = clock.Elapsed;
                }
                Console.Write(detokenizer.Append(token));
            });
            var total = clock.Elapsed;
            Console.WriteLine(detokenizer.Flush());
            var generated = result.OutputTokenIds.Count;
            var decodeSeconds = (total - firstTokenAt).TotalSeconds;
            var decodeRate = generated > 1 && decodeSeconds > 0 ? (generated - 1) / decodeSeconds : 0;
            var prefillRate = promptIds.Count / firstTokenAt.TotalSeconds;
            if (parse.GetValue(routingOut) is { } file)
            {
                NpyFile.WriteRouting(file.FullName, result.RoutingFormat, result.Routing);
            }
            Console.Error.WriteLine(
                $"prompt_tokens={promptIds.Count} generated_tokens={generated} finish={result.FinishReason.ToString().ToLowerInvariant()} " +
                $"moe_layers={result.RoutingFormat.MoeLayerCount} top_k={result.RoutingFormat.TopK} routing_rows={result.RoutingRowCount} " +
                $"prefill_tokens_per_s={prefillRate:F1} decode_tokens_per_s={decodeRate:F1}");
            return 0;
        });
        return command;
    }
}
