using System.CommandLine;
using System.Globalization;
using RouteReplay.Backends.Cuda;
using RouteReplay.Cli.Bench;
using RouteReplay.Engine;

namespace RouteReplay.Cli.Commands;

/// <summary>
/// <c>routereplay bench</c>: decode tokens/s at given batch sizes and prefill tokens/s, in-process, with routing
/// capture on and off alternating within one run; on a GPU also the device's ceilings, each decode figure as a
/// fraction of its memory-bandwidth roofline, and a per-kernel time breakdown.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var batchSizes = new Option<string>("--batch-sizes") { Description = "Decode batch sizes, comma-separated.", DefaultValueFactory = _ => "1,8,64" };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Prompt tokens of each decode request.", DefaultValueFactory = _ => 512 };
        var outputTokens = new Option<int>("--output-tokens") { Description = "Tokens each decode request generates.", DefaultValueFactory = _ => 256 };
        var prefillRequests = new Option<int>("--prefill-requests") { Description = "Requests of the prefill run (0 skips it).", DefaultValueFactory = _ => 8 };
        var prefillTokens = new Option<int>("--prefill-tokens") { Description = "Prompt tokens of each prefill request.", DefaultValueFactory = _ => 2048 };
        var rounds = new Option<int>("--rounds") { Description = "Rounds; each runs every shape with routing on and off, alternating which goes first.", DefaultValueFactory = _ => 2 };
        var routing = new Option<string>("--routing") { Description = "Capture modes: both, on or off.", DefaultValueFactory = _ => "both" };
        var profile = new Option<bool>("--profile") { Description = "With --device cuda: after the timed runs, one profiled run per shape (CUDA events per kernel class)." };
        var jsonOut = new Option<FileInfo?>("--json-out") { Description = "Write every figure as JSON." };
        var flags = new EngineFlags();
        var modelFlags = new ModelFlags();
        var command = new Command("bench", "Measure decode and prefill throughput in-process, routing capture on vs off; on a GPU against the memory-bandwidth roofline.")
        {
            batchSizes, promptTokens, outputTokens, prefillRequests, prefillTokens, rounds, routing, profile, jsonOut,
        };
        modelFlags.AddTo(command);
        flags.AddTo(command);
        command.SetAction(parse =>
        {
            var options = flags.Read(parse);
            var batches = ParseBatches(parse.GetValue(batchSizes)!);
            var prompt = parse.GetValue(promptTokens);
            var output = parse.GetValue(outputTokens);
            var prefillCount = parse.GetValue(prefillRequests);
            var prefillLength = parse.GetValue(prefillTokens);
            var roundCount = parse.GetValue(rounds);
            var modes = parse.GetValue(routing) switch
            {
                "both" => new[] { true, false },
                "on" => [true],
                "off" => [false],
                var other => throw new ArgumentException($"--routing must be both, on or off, got '{other}'", "routing"),
            };
            Require(prompt >= 1 && output >= 2 && prompt + output <= options.MaxModelLen, "prompt-tokens", $"and --output-tokens (>= 2) must fit --max-model-len {options.MaxModelLen}");
            Require(batches.Max() <= options.MaxNumSeqs, "batch-sizes", $"must be at most --max-num-seqs {options.MaxNumSeqs}");
            Require(prefillCount >= 0 && prefillCount <= options.MaxNumSeqs, "prefill-requests", $"must be in 0..--max-num-seqs {options.MaxNumSeqs}");
            Require(prefillCount == 0 || (prefillLength >= 1 && prefillLength < options.MaxModelLen), "prefill-tokens", $"must be in 1..--max-model-len {options.MaxModelLen}");
            Require(roundCount is >= 1 and <= 100, "rounds", $"must be in 1..100, got {roundCount}");

            var source = modelFlags.Read(parse);
            var ceilings = options.Device == ComputeDevice.Cuda ? CudaBackend.MeasureCeilings() : null;
            using var engine = source.Load(options, Console.Error);
            var cuda = engine.Backend as CudaBackend;
            Console.Error.WriteLine($"bench: {source.Name ?? "tiny"} on {cuda?.DeviceName ?? "the CPU"}, {engine.Pool.NumBlocks} KV blocks of {options.BlockSize}, " +
                $"max-num-batched-tokens {options.MaxNumBatchedTokens}");
            var bench = new EngineBench(engine, engine.Tokenizer.TokenCount);
            bench.Decode(batches.Min(), Math.Min(prompt, 64), 4, modes[0], -1);
            if (prefillCount > 0)
            {
                bench.Prefill(Math.Min(prefillCount, 2), Math.Min(prefillLength, 256), modes[0], -1);
            }
            var decodes = new List<DecodeRun>();
            var prefills = new List<PrefillRun>();
            for (var round = 0; round < roundCount; round++)
            {
                var order = round % 2 == 0 ? modes : modes.Reverse().ToArray();
                foreach (var mode in order)
                {
                    foreach (var batch in batches)
                    {
                        decodes.Add(bench.Decode(batch, prompt, output, mode, round));
                        Console.Error.WriteLine($"bench: round {round} routing {(mode ? "on" : "off")} decode batch {batch}: {decodes[^1].TokensPerSecond:F1} tokens/s");
                    }
                    if (prefillCount > 0)
                    {
                        prefills.Add(bench.Prefill(prefillCount, prefillLength, mode, round));
                        Console.Error.WriteLine($"bench: round {round} routing {(mode ? "on" : "off")} prefill: {prefills[^1].TokensPerSecond:F1} tokens/s");
                    }
                }
            }
            var profiles = new List<KernelProfile>();
            if (parse.GetValue(profile) && cuda is not null)
            {
                foreach (var batch in batches)
                {
                    bench.Decode(batch, prompt, Math.Min(output, 64), modes[0], roundCount, cuda, profiles);
                }
                if (prefillCount > 0)
                {
                    bench.Prefill(prefillCount, prefillLength, modes[0], roundCount, cuda, profiles);
                }
            }
            var report = new BenchReport(source.Name ?? "tiny", cuda?.DeviceName, ceilings, engine.ModelConfig, options, prompt, output, decodes, prefills, profiles);
            if (parse.GetValue(jsonOut) is { } file)
            {
                File.WriteAllText(file.FullName, report.ToJson());
            }
            Console.WriteLine(report.ToTable());
            return 0;
        });
        return command;
    }

    private static int[] ParseBatches(string text)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var values = new List<int>();
        foreach (var part in parts)
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value < 1)
            {
                throw new ArgumentException($"--batch-sizes must be positive integers separated by commas, got '{text}'", "batch-sizes");
            }
            values.Add(value);
        }
        Require(values.Count > 0, "batch-sizes", "must name at least one batch size");
        return [.. values];
    }

    private static void Require(bool condition, string flag, string message)
    {
        if (!condition)
        {
            throw new ArgumentException($"--{flag} {message}", flag);
        }
    }
}
