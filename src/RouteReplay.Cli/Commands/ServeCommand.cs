using System.CommandLine;
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
        var host = new Option<string>("--host") { Description = "Address to bind (loopback by default; 0.0.0.0 for every interface).", DefaultValueFactory = _ => defaults.Host };
        var port = new Option<int>("--port") { Description = "TCP port (0: any free port).", DefaultValueFactory = _ => defaults.Port };
        var apiKey = new Option<string?>("--api-key") { Description = "Require 'Authorization: Bearer KEY' on /v1/*, /generate and the control endpoints." };
        var servedModelName = new Option<string?>("--served-model-name") { Description = "The model id clients name (default: the model folder's name)." };
        var maxWaiting = new Option<int>("--max-waiting-requests") { Description = "Choices that may wait beyond --max-num-seqs; more are answered 503.", DefaultValueFactory = _ => defaults.MaxWaitingRequests };
        var maxBody = new Option<long>("--max-request-body-bytes") { Description = "Largest request body; larger ones are answered 413.", DefaultValueFactory = _ => defaults.MaxRequestBodyBytes };
        var grace = new Option<double>("--shutdown-grace-seconds") { Description = "On SIGTERM/Ctrl-C, how long in-flight requests may finish before they are aborted.", DefaultValueFactory = _ => defaults.ShutdownGracePeriod.TotalSeconds };
        var flags = new EngineFlags();
        var modelFlags = new ModelFlags();
        var command = new Command("serve", "Serve the model over HTTP: OpenAI-compatible /v1 API and SGLang-compatible /generate, with routing per choice.")
        {
            host, port, apiKey, servedModelName, maxWaiting, maxBody, grace,
        };
        modelFlags.AddTo(command);
        flags.AddTo(command);
        command.SetAction(parse =>
        {
            var engineOptions = flags.Read(parse);
            var source = modelFlags.Read(parse);
            var graceSeconds = parse.GetValue(grace);
            if (!double.IsFinite(graceSeconds) || graceSeconds < 0 || graceSeconds > 86_400)
            {
                throw new ArgumentException($"--shutdown-grace-seconds must be in 0..86400, got {graceSeconds}", "shutdown-grace-seconds");
            }
            var options = new ServerOptions
            {
                ModelPath = source.Format == LoadFormat.Dummy ? source.Name! : source.Directory ?? "",
                ServedModelName = parse.GetValue(servedModelName) ?? (source.Format == LoadFormat.Dummy ? source.Name : null),
                Host = parse.GetValue(host)!,
                Port = parse.GetValue(port),
                ApiKey = parse.GetValue(apiKey),
                MaxWaitingRequests = parse.GetValue(maxWaiting),
                MaxRequestBodyBytes = parse.GetValue(maxBody),
                ShutdownGracePeriod = TimeSpan.FromSeconds(graceSeconds),
                WeightVersion = engineOptions.WeightsVersion,
            };
            options.Validate();
            var server = Load(options, engineOptions, source);
            server.RunAsync().GetAwaiter().GetResult();
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
            if (options.ModelPath.Length == 0)
            {
                stage("Preparing the built-in tiny model");
                options = options with { ModelPath = DefaultModel.EnsureTinyModel(TextWriter.Null), ServedModelName = options.ServedModelName ?? DefaultModel.Preset };
            }
            var dummy = source.Format == LoadFormat.Dummy;
            if (!dummy)
            {
                source = source with { Directory = options.ModelPath };
                stage($"Hashing the weights in {options.ModelPath}");
            }
            var version = source.WeightsIdentity(engineOptions);
            stage(dummy ? $"Making random '{source.Name}' weights on the GPU" : $"Loading {options.ModelPath} on the {engineOptions.Device.ToString().ToUpperInvariant()}");
            var engine = source.Load(engineOptions with { WeightsVersion = version }, TextWriter.Null);
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
