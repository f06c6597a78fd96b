using System.CommandLine;
using RouteReplay.Cache;
using RouteReplay.Engine;
using RouteReplay.Server;
using Spectre.Console;

namespace RouteReplay.Cli.Commands;

/// <summary><c>routereplay serve</c>: the OpenAI- and SGLang-compatible rollout server.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var defaults = new ServerOptions { ModelPath = "." };
        var model = new ModelFlags();
        var host = new Option<string>("--host") { Description = "Address to bind (loopback by default; 0.0.0.0 for every interface).", DefaultValueFactory = _ => defaults.Host };
        var port = Flags.Int("--port", "TCP port (0: any free port).", defaults.Port);
        var apiKey = new Option<string?>("--api-key") { Description = "Require 'Authorization: Bearer KEY' on /v1/*, /generate and the control endpoints." };
        var servedModelName = new Option<string?>("--served-model-name") { Description = "The model id clients name (default: the model folder's name, or the preset's)." };
        var maxWaiting = Flags.Int("--max-waiting-requests", "Choices that may wait beyond --max-num-seqs; more are answered 503.", defaults.MaxWaitingRequests);
        var maxBody = Flags.Long("--max-request-body-bytes", "Largest request body; larger ones are answered 413.", defaults.MaxRequestBodyBytes);
        var grace = Flags.Double("--shutdown-grace-seconds", "On SIGTERM/Ctrl-C, how long in-flight requests may finish before they are aborted (with finish reason abort).", defaults.ShutdownGracePeriod.TotalSeconds);
        var keepAlive = Flags.Double("--keep-alive-seconds", "How long an idle connection stays open (before its first request or between requests).", defaults.KeepAlive.TotalSeconds);
        var sleepWait = Flags.Double("--sleep-wait-timeout-seconds", "How long a request that arrives while the GPU memory is released waits for a resume before it is answered 503 (0: at once).", defaults.SleepWaitTimeout.TotalSeconds);
        var flags = new EngineFlags();
        var disaggregation = new DisaggregationFlags();
        var command = new Command("serve", "Serve the model over HTTP: OpenAI-compatible /v1 API and SGLang-compatible /generate, with routing per choice.")
        {
            host, port, apiKey, servedModelName, maxWaiting, maxBody, grace, keepAlive, sleepWait,
        };
        model.AddTo(command);
        flags.AddTo(command);
        disaggregation.AddTo(command);
        command.SetAction(parse =>
        {
            var engineOptions = flags.Read(parse);
            var graceSeconds = parse.GetValue(grace);
            if (!double.IsFinite(graceSeconds) || graceSeconds < 0 || graceSeconds > 86_400)
            {
                throw new ArgumentException($"--shutdown-grace-seconds must be in 0..86400, got {graceSeconds}", "shutdown-grace-seconds");
            }
            var keepAliveSeconds = parse.GetValue(keepAlive);
            if (!double.IsFinite(keepAliveSeconds) || keepAliveSeconds < 0.001 || keepAliveSeconds > 86_400)
            {
                throw new ArgumentException($"--keep-alive-seconds must be in 0.001..86400, got {keepAliveSeconds}", "keep-alive-seconds");
            }
            var sleepWaitSeconds = parse.GetValue(sleepWait);
            if (!double.IsFinite(sleepWaitSeconds) || sleepWaitSeconds < 0 || sleepWaitSeconds > 86_400)
            {
                throw new ArgumentException($"--sleep-wait-timeout-seconds must be in 0..86400, got {sleepWaitSeconds}", "sleep-wait-timeout-seconds");
            }
            var source = model.Read(parse);
            var options = new ServerOptions
            {
                ModelPath = source.Format == LoadFormat.Dummy ? source.Name : source.Choice.Folder ?? "",
                Host = parse.GetValue(host)!,
                Port = parse.GetValue(port),
                ApiKey = parse.GetValue(apiKey),
                ServedModelName = parse.GetValue(servedModelName) ?? (source.Format == LoadFormat.Dummy ? source.Name : null),
                MaxWaitingRequests = parse.GetValue(maxWaiting),
                MaxRequestBodyBytes = parse.GetValue(maxBody),
                ShutdownGracePeriod = TimeSpan.FromSeconds(graceSeconds),
                KeepAlive = TimeSpan.FromSeconds(keepAliveSeconds),
                SleepWaitTimeout = TimeSpan.FromSeconds(sleepWaitSeconds),
                WeightVersion = engineOptions.WeightsVersion,
                Disaggregation = disaggregation.Read(parse),
            };
            options.Validate();
            RolloutServer.CheckCanListen(options);
            var server = Load(options, engineOptions, source);
            Console.Error.WriteLine($"routereplay serve: {server.Host.Engine.Engine.PoolSizes}");
            try
            {
                server.RunAsync().GetAwaiter().GetResult();
            }
            catch (EngineStoppedException)
            {
                // The server has logged the cause in one line.
                return CommandRunner.Failed;
            }
            Console.Error.WriteLine("routereplay serve: stopped");
            return 0;
        });
        return command;
    }

    /// <summary>Makes the default model if needed, loads the engine and builds the server, with a progress display on a terminal.</summary>
    private static RolloutServer Load(ServerOptions options, EngineOptions engineOptions, ModelSource source)
    {
        RolloutServer? server = null;
        void Run(Action<string> stage)
        {
            string version;
            LlmEngine engine;
            if (source.Format == LoadFormat.Dummy)
            {
                version = source.WeightsIdentity(engineOptions)!;
                stage($"Making random '{source.Name}' weights on the GPU");
                engine = source.Load(engineOptions with { WeightsVersion = version }, TextWriter.Null);
            }
            else
            {
                if (source.Choice.Preset is { } preset)
                {
                    stage($"Preparing the built-in '{preset}' model (random weights)");
                    options = options with { ModelPath = source.Choice.Materialize(TextWriter.Null), ServedModelName = options.ServedModelName ?? preset };
                }
                stage($"Hashing the weights in {options.ModelPath}");
                version = options.WeightVersion ?? ModelFingerprint.HashWeights(options.ModelPath);
                stage($"Loading {options.ModelPath} on the {(engineOptions.Device == ComputeDevice.Cuda ? "GPU" : "CPU")}");
                engine = LoadedModel.Load(options.ModelPath, engineOptions with { WeightsVersion = version });
            }
            try
            {
                stage("Starting the server");
                server = RolloutServer.Create(engine, options, version);
            }
            catch
            {
                engine.Dispose();
                throw;
            }
        }

        if (!Console.IsErrorRedirected && AnsiConsole.Profile.Capabilities.Interactive)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            console.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
                .Start(context =>
                {
                    ProgressTask? current = null;
                    Run(stage =>
                    {
                        current?.Value(100).StopTask();
                        current = context.AddTask(Markup.Escape(stage), maxValue: 100).IsIndeterminate();
                    });
                    current?.IsIndeterminate(false).Value(100).StopTask();
                });
        }
        else
        {
            Run(stage => Console.Error.WriteLine($"routereplay serve: {stage}..."));
        }
        return server!;
    }
}
