using System.Net;
using System.Net.Sockets;
using Garnet;
using Microsoft.Extensions.Logging.Abstractions;
using StackExchange.Redis;

namespace RouteReplay.Tests.Support;

/// <summary>A real Redis-protocol server (Garnet) hosted in the test process on a free loopback port.</summary>
public sealed class GarnetServerFixture : IDisposable
{
    private GarnetServer? _server;

    public GarnetServerFixture()
    {
        Port = FreePort();
        Start();
    }

    public int Port { get; }

    /// <summary>The <c>--kv-store</c> value that reaches this server.</summary>
    public string StoreSpec => $"redis://127.0.0.1:{Port}";

    public void Start()
    {
        _server = new GarnetServer(["--port", Port.ToString(), "--bind", "127.0.0.1", "--memory", "256m", "--index", "16m"], NullLoggerFactory.Instance);
        _server.Start();
    }

    /// <summary>Stops the server as a crash would: connections drop, the port stops answering.</summary>
    public void Kill()
    {
        _server?.Dispose();
        _server = null;
    }

    public ConnectionMultiplexer Connect() => ConnectPatiently($"127.0.0.1:{Port}");

    /// <summary>
    /// An admin connection to <paramref name="endpoints"/>, retried for up to 30 s: on a loaded test machine a server
    /// that has just started may take longer than the client's default 5 s to answer.
    /// </summary>
    public static ConnectionMultiplexer ConnectPatiently(string endpoints)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                return ConnectionMultiplexer.Connect($"{endpoints},allowAdmin=true,connectTimeout=10000");
            }
            catch (Exception e) when (e is RedisConnectionException or RedisTimeoutException && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(200);
            }
        }
    }

    public void Dispose() => Kill();

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>
/// A three-node Redis Cluster of real Garnet servers in the test process, on loopback: the 16,384 hash slots split
/// in three ranges, the nodes introduced to each other with <c>CLUSTER MEET</c>.
/// </summary>
public sealed class GarnetClusterFixture : IDisposable
{
    private readonly List<GarnetServer?> _servers = [];
    private readonly List<string> _folders = [];

    public GarnetClusterFixture()
    {
        Ports = [GarnetServerFixture.FreePort(), GarnetServerFixture.FreePort(), GarnetServerFixture.FreePort()];
        foreach (var port in Ports)
        {
            var folder = Directory.CreateTempSubdirectory("routereplay-garnet-").FullName;
            _folders.Add(folder);
            var server = new GarnetServer(
                ["--port", port.ToString(), "--bind", "127.0.0.1", "--cluster", "--memory", "128m", "--index", "16m", "--checkpointdir", folder, "--device-type", "FileStream"],
                NullLoggerFactory.Instance);
            server.Start();
            _servers.Add(server);
        }
        const int slots = 16384;
        for (var i = 0; i < Ports.Length; i++)
        {
            using var connection = GarnetServerFixture.ConnectPatiently($"127.0.0.1:{Ports[i]}");
            var node = connection.GetServer("127.0.0.1", Ports[i]);
            node.Execute("CLUSTER", "ADDSLOTSRANGE", i * slots / 3, ((i + 1) * slots / 3) - 1);
            if (i > 0)
            {
                node.Execute("CLUSTER", "MEET", "127.0.0.1", Ports[0]);
            }
        }
        WaitUntilFormed();
    }

    public int[] Ports { get; }

    /// <summary>The <c>--kv-store</c> value naming two of the three nodes (the client discovers the third).</summary>
    public string StoreSpec => $"redis://127.0.0.1:{Ports[0]},127.0.0.1:{Ports[1]}";

    public ConnectionMultiplexer Connect() => GarnetServerFixture.ConnectPatiently(string.Join(',', Ports.Select(p => $"127.0.0.1:{p}")));

    /// <summary>Stops node <paramref name="node"/> as a crash would: its connections drop and its port stops answering.</summary>
    public void Kill(int node)
    {
        _servers[node]?.Dispose();
        _servers[node] = null;
    }

    /// <summary>Polls each node, on a fresh connection each time (the nodes' view changes as they meet), for up to 60 s.</summary>
    private void WaitUntilFormed()
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            if (Ports.All(IsFormedAt))
            {
                return;
            }
            Thread.Sleep(100);
        }
        throw new InvalidOperationException("the three Garnet nodes did not form a cluster within 60 s");
    }

    private static bool IsFormedAt(int port)
    {
        try
        {
            using var connection = GarnetServerFixture.ConnectPatiently($"127.0.0.1:{port}");
            var info = (string?)connection.GetServer("127.0.0.1", port).Execute("CLUSTER", "INFO") ?? "";
            return info.Contains("cluster_state:ok", StringComparison.Ordinal) && info.Contains("cluster_known_nodes:3", StringComparison.Ordinal);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        foreach (var server in _servers)
        {
            server?.Dispose();
        }
        foreach (var folder in _folders)
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
