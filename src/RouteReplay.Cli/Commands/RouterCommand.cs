using System.CommandLine;
using RouteReplay.Server.Router;

namespace RouteReplay.Cli.Commands;

/// <summary><c>routereplay router</c>: one entry point for prefill and decode servers, or for workers, with the API of <c>serve</c>.</summary>
internal static class RouterCommand
{
    public static Command Create()
    {
        var defaults = new RouterOptions();
        var worker = new Option<string[]>("--worker") { Description = "Base URL of a worker (a plain serve) for data-parallel serving; repeat for more. Not with --prefill/--decode.", Arity = ArgumentArity.OneOrMore, HelpName = "URL" };
        var policy = Flags.Choice("--policy", "Workers only: how a worker is chosen for each request (cache_aware: the one whose recent prompts share the most leading blocks, unless overloaded).", defaults.Policy, PolicyNames.All);
        var absThreshold = Flags.Int("--balance-abs-threshold", "Workers, cache_aware only: the best-matching worker is passed over for the least loaded one when it has more than N requests in flight beyond it (and more than --balance-rel-threshold times them).", defaults.BalanceAbsThreshold);
        var relThreshold = Flags.Double("--balance-rel-threshold", "Workers, cache_aware only: see --balance-abs-threshold.", defaults.BalanceRelThreshold);
        var maxTreeSize = Flags.Int("--max-tree-size", "Workers, cache_aware only: the most prompt blocks remembered per worker (least recently used forgotten first).", defaults.MaxTreeSize);
        var prefill = new Option<string[]>("--prefill") { Description = "Base URL of a prefill server (serve --role prefill); repeat for more.", Arity = ArgumentArity.OneOrMore, HelpName = "URL" };
        var decode = new Option<string[]>("--decode") { Description = "Base URL of a decode server (serve --role decode); repeat for more.", Arity = ArgumentArity.OneOrMore, HelpName = "URL" };
        var host = new Option<string>("--host") { Description = "Address to bind (loopback by default; 0.0.0.0 for every interface).", DefaultValueFactory = _ => defaults.Host };
        var port = Flags.Int("--port", "TCP port (0: any free port).", defaults.Port);
        var apiKey = new Option<string?>("--api-key") { Description = "Require 'Authorization: Bearer KEY' from clients (as serve does) and send it to every server." };
        var maxBody = Flags.Long("--max-request-body-bytes", "Largest request body; larger ones are answered 413.", defaults.MaxRequestBodyBytes);
        var startup = Flags.Double("--startup-timeout-seconds", "How long to wait at startup for every server to answer.", defaults.StartupTimeout.TotalSeconds);
        var grace = Flags.Double("--shutdown-grace-seconds", "On SIGTERM/Ctrl-C, how long requests in flight may finish before they are aborted (with finish reason abort, as serve does).", defaults.ShutdownGracePeriod.TotalSeconds);
        var clusterKey = new ClusterKeyFlags();
        var keepAlive = Flags.Double("--keep-alive-seconds", "How long an idle client connection stays open (before its first request or between requests).", defaults.KeepAlive.TotalSeconds);
        var command = new Command("router", "Route the serve API across workers (plain serve processes, data-parallel: each request to one worker, by prefix cache and load), or across prefill and decode servers: each request's prompt is computed on a prefill server, its blocks (routing included) move to a decode server, which decodes and answers.")
        {
            worker, prefill, decode, policy, absThreshold, relThreshold, maxTreeSize, host, port, apiKey, maxBody, startup, grace, keepAlive,
        };
        clusterKey.AddTo(command);
        command.SetAction(parse =>
        {
            var options = new RouterOptions
            {
                PrefillServers = Urls(parse.GetValue(prefill), "prefill"),
                DecodeServers = Urls(parse.GetValue(decode), "decode"),
                Workers = Urls(parse.GetValue(worker), "worker"),
                Policy = parse.GetValue(policy),
                BalanceAbsThreshold = parse.GetValue(absThreshold),
                BalanceRelThreshold = parse.GetValue(relThreshold),
                MaxTreeSize = parse.GetValue(maxTreeSize),
                Host = parse.GetValue(host)!,
                Port = parse.GetValue(port),
                ApiKey = parse.GetValue(apiKey),
                ClusterKey = clusterKey.Read(parse),
                MaxRequestBodyBytes = parse.GetValue(maxBody),
                StartupTimeout = Seconds(parse.GetValue(startup), "startup-timeout-seconds", 0.001),
                ShutdownGracePeriod = Seconds(parse.GetValue(grace), "shutdown-grace-seconds", 0),
                KeepAlive = Seconds(parse.GetValue(keepAlive), "keep-alive-seconds", 0.001),
            }.Validate();
            if (options.Workers.Count == 0 && new Option[] { policy, absThreshold, relThreshold, maxTreeSize }.FirstOrDefault(o => Flags.IsGiven(parse, o)) is { } workersOnly)
            {
                throw new ArgumentException($"{workersOnly.Name} applies to --worker only", workersOnly.Name.TrimStart('-'));
            }
            Server.RolloutServer.CheckCanListen(new Server.ServerOptions { ModelPath = ".", Host = options.Host, Port = options.Port });
            Console.Error.WriteLine(options.Workers.Count > 0
                ? $"routereplay router: waiting for {options.Workers.Count} worker{(options.Workers.Count == 1 ? "" : "s")}..."
                : $"routereplay router: waiting for {options.PrefillServers.Count} prefill and {options.DecodeServers.Count} decode servers...");
            var router = RouterServer.CreateAsync(options).GetAwaiter().GetResult();
            router.RunAsync().GetAwaiter().GetResult();
            router.DisposeAsync().AsTask().GetAwaiter().GetResult();
            Console.Error.WriteLine("routereplay router: stopped");
            return 0;
        });
        return command;
    }

    private static Uri[] Urls(string[]? values, string flag) => (values ?? []).Select(value =>
        Uri.TryCreate(value, UriKind.Absolute, out var url) && url.Scheme is "http" or "https"
            ? url
            : throw new ArgumentException($"--{flag} '{value}' is not an http:// URL", flag)).ToArray();

    private static TimeSpan Seconds(double value, string flag, double minimum) =>
        double.IsFinite(value) && value >= minimum && value <= 86_400
            ? TimeSpan.FromSeconds(value)
            : throw new ArgumentException($"--{flag} must be in {minimum}..86400, got {value}", flag);
}
