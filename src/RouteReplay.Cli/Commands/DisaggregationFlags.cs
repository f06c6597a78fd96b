using System.CommandLine;
using RouteReplay.Disaggregation;
using RouteReplay.Engine;

namespace RouteReplay.Cli.Commands;

/// <summary><c>serve</c>'s prefill/decode flags; each maps to one <see cref="DisaggregationOptions"/> field.</summary>
internal sealed class DisaggregationFlags
{
    private static readonly DisaggregationOptions Defaults = new();

    private static readonly Dictionary<string, ServerRole> Roles = new()
    {
        ["both"] = ServerRole.Both,
        ["prefill"] = ServerRole.Prefill,
        ["decode"] = ServerRole.Decode,
    };

    private static readonly Dictionary<string, PrefillFallback> Fallbacks = new()
    {
        ["local"] = PrefillFallback.Local,
        ["error"] = PrefillFallback.Error,
    };

    private readonly Option<ServerRole> _role = Flags.Choice("--role", "both (prefill and decode here: a plain server), prefill (compute prompts for decode servers, send their blocks over --transfer-port) or decode (import prompts' blocks from the prefill servers a router names, then decode).", ServerRole.Both, Roles);
    private readonly Option<int> _transferPort = Flags.Int("--transfer-port", "Prefill role: TCP port decode servers fetch prompt blocks from, on --host (0: any free port, shown in the log and /get_model_info).", Defaults.TransferPort);
    private readonly Option<PrefillFallback> _fallback = Flags.Choice("--pd-fallback", "Decode role: when every prefill server failed a request, local (compute its prompt here) or error (fail it).", Defaults.Fallback, Fallbacks);
    private readonly Option<int> _connectTimeout = Flags.Int("--pd-connect-timeout-ms", "Decode role: longest a connection and handshake with a prefill server may take.", Defaults.ConnectTimeoutMs);
    private readonly Option<int> _transferTimeout = Flags.Int("--pd-transfer-timeout-ms", "Decode role: longest a prefill server may stay silent during a transfer (it sends a heartbeat every quarter of this); then the next prefill server or the fallback takes over.", Defaults.TransferTimeoutMs);
    private readonly Option<string?> _prefillPeers = new("--prefill-peers")
    {
        Description = "Decode role: prefill transfer addresses a request may name without the router's signature (comma-separated); without it or --cluster-key, the prefill servers a request names are ignored.",
        HelpName = "HOST:PORT[,HOST:PORT...]",
    };

    private readonly ClusterKeyFlags _clusterKey = new();
    private readonly Option<int> _holdTimeout = Flags.Int("--pd-hold-timeout-ms", "Prefill role: longest the blocks of a finished prefill are held for the decode server's acknowledgement (or a stalled decode server's reads) before they are released.", Defaults.HoldTimeoutMs);

    public void AddTo(Command command)
    {
        command.Options.Add(_role);
        command.Options.Add(_transferPort);
        command.Options.Add(_fallback);
        command.Options.Add(_connectTimeout);
        command.Options.Add(_transferTimeout);
        command.Options.Add(_holdTimeout);
        command.Options.Add(_prefillPeers);
        _clusterKey.AddTo(command);
    }

    /// <summary>The options, refusing a flag its role does not use.</summary>
    public DisaggregationOptions Read(ParseResult parse)
    {
        var role = parse.GetValue(_role);
        foreach (var (option, only) in new (Option, ServerRole)[]
        {
            (_transferPort, ServerRole.Prefill), (_holdTimeout, ServerRole.Prefill),
            (_fallback, ServerRole.Decode), (_connectTimeout, ServerRole.Decode), (_transferTimeout, ServerRole.Decode), (_prefillPeers, ServerRole.Decode),
        })
        {
            if (Flags.IsGiven(parse, option) && role != only)
            {
                throw new ArgumentException($"{option.Name} applies to --role {only.ToString().ToLowerInvariant()} only", option.Name.TrimStart('-'));
            }
        }
        if (_clusterKey.IsGiven(parse) && role == ServerRole.Both)
        {
            throw new ArgumentException("--cluster-key and --cluster-key-file apply to --role prefill or decode only", "cluster-key");
        }
        return new DisaggregationOptions
        {
            Role = role,
            TransferPort = parse.GetValue(_transferPort),
            Fallback = parse.GetValue(_fallback),
            ConnectTimeoutMs = parse.GetValue(_connectTimeout),
            TransferTimeoutMs = parse.GetValue(_transferTimeout),
            HoldTimeoutMs = parse.GetValue(_holdTimeout),
            PrefillPeers = PrefillPeers(parse.GetValue(_prefillPeers)),
            ClusterKey = role == ServerRole.Both ? null : _clusterKey.Read(parse),
        }.Validate();
    }

    private static TransferEndpoint[] PrefillPeers(string? list)
    {
        if (list is null)
        {
            return [];
        }
        try
        {
            var peers = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(TransferEndpoint.Parse).ToArray();
            return peers.Length > 0 ? peers : throw new FormatException("it names no address");
        }
        catch (FormatException e)
        {
            throw new ArgumentException($"--prefill-peers must list prefill transfer addresses as host:port, comma-separated: {e.Message}", "prefill-peers");
        }
    }
}
