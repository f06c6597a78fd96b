using System.Net;
using System.Net.Sockets;
using System.Text;
using RouteReplay.Server.Http;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>
/// More idle connections than the open-files limit allows: a real <c>serve</c> (and a real router) started under
/// <c>ulimit -n</c> stays up, refuses and counts the connections past its limit, keeps answering on a connection it
/// admitted before, and answers new ones once the flood is gone. Idle connections are closed after the keep-alive.
/// </summary>
public sealed class IdleConnectionTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>, IDisposable
{
    private const int OpenFiles = 1024;

    private readonly string _cache = Directory.CreateTempSubdirectory("routereplay-idle-").FullName;

    [Fact]
    public async Task Serve_under_a_low_open_files_limit_outlives_a_flood_of_idle_connections_and_counts_the_refused_ones()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        await using var serve = await CliProcess.StartWithOpenFilesLimitAsync(_cache, OpenFiles, "serve", "--model", model.Directory, "--port", "0", "--num-blocks", "256");
        await FloodAsync(serve, "routereplay_connections");
    }

    [Fact]
    public async Task The_router_under_a_low_open_files_limit_outlives_a_flood_of_idle_connections_and_counts_the_refused_ones()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        string[] serve = ["serve", "--model", model.Directory, "--port", "0", "--num-blocks", "256", "--weights-version", "test"];
        await using var prefill = await CliProcess.StartAsync(_cache, [.. serve, "--role", "prefill", .. TestClusterKey.Flags]);
        await using var decode = await CliProcess.StartAsync(_cache, [.. serve, "--role", "decode", .. TestClusterKey.Flags]);
        await using var router = await CliProcess.StartWithOpenFilesLimitAsync(_cache, OpenFiles, ["router", "--port", "0", "--prefill", prefill.Url.ToString(), "--decode", decode.Url.ToString(), .. TestClusterKey.Flags]);
        await FloodAsync(router, "routereplay_router_connections");
    }

    [Fact]
    public async Task An_idle_connection_is_closed_after_the_keep_alive_before_and_after_a_request()
    {
        await using var server = await TestServer.StartAsync(model.Directory, o => o with { KeepAlive = TimeSpan.FromSeconds(1) });
        var endpoint = new IPEndPoint(IPAddress.Loopback, server.BaseAddress.Port);

        using var silent = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await silent.ConnectAsync(endpoint);
        Assert.Equal("", await ReadUntilClosedAsync(silent));

        using var used = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await used.ConnectAsync(endpoint);
        await used.SendAsync(Encoding.ASCII.GetBytes("GET /health HTTP/1.1\r\nHost: test\r\n\r\n"));
        Assert.StartsWith("HTTP/1.1 200", await ReadUntilClosedAsync(used));
    }

    /// <summary>
    /// Opens more connections than <see cref="OpenFiles"/> that send nothing and holds them, while a client that
    /// connected first goes on using its one connection; then lets them go and connects anew.
    /// </summary>
    private static async Task FloodAsync(CliProcess server, string metricPrefix)
    {
        var connects = 0;
        using var admitted = new HttpClient(new SocketsHttpHandler
        {
            MaxConnectionsPerServer = 1,
            ConnectCallback = async (context, cancellationToken) =>
            {
                Interlocked.Increment(ref connects);
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            },
        })
        { BaseAddress = server.Url, Timeout = TimeSpan.FromMinutes(2) };
        Assert.Equal(HttpStatusCode.OK, (await admitted.GetAsync("/health")).StatusCode);
        var max = (await CliProcess.MetricsAsync(admitted))[metricPrefix + "_max"];
        Assert.InRange(max, ConnectionLimits.Fewest, OpenFiles - ConnectionLimits.Reserve);

        var flood = await OpenIdleConnectionsAsync(server.Url.Port, OpenFiles + 200);
        try
        {
            Assert.True(flood.Count > OpenFiles, $"only {flood.Count} of {OpenFiles + 200} idle connections could be opened");
            var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
            double refused;
            while ((refused = (await CliProcess.MetricsAsync(admitted))[metricPrefix + "_refused_total"]) < flood.Count - max + 1)
            {
                Assert.False(server.HasExited, $"the server died under the flood:\n{server.Output}");
                Assert.True(DateTime.UtcNow < deadline, $"only {refused} connections were refused of {flood.Count} idle ones past a limit of {max}");
                await Task.Delay(100);
            }
            Assert.True(Directory.GetFiles($"/proc/{server.Id}/fd").Length < OpenFiles);
            using var completion = await admitted.PostAsync("/v1/completions", new StringContent("""{"prompt": "still admitted", "max_tokens": 2}""", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, completion.StatusCode);
            Assert.Contains("\"choices\"", await completion.Content.ReadAsStringAsync());
            Assert.Equal(1, connects);
        }
        finally
        {
            foreach (var socket in flood)
            {
                socket.Dispose();
            }
        }
        await Eventually.WaitUntilAsync(
            async () =>
            {
                try
                {
                    using var fresh = await server.Client.PostAsync("/v1/completions", new StringContent("""{"prompt": "a new connection", "max_tokens": 2}""", Encoding.UTF8, "application/json"));
                    return fresh.StatusCode == HttpStatusCode.OK;
                }
                catch (HttpRequestException)
                {
                    return false;
                }
            },
            "a new connection is served after the flood");
        Assert.False(server.HasExited);
        Assert.True((await server.MetricsAsync())[metricPrefix + "_refused_total"] > 0);
    }

    private static async Task<List<Socket>> OpenIdleConnectionsAsync(int port, int count)
    {
        var opened = await Task.WhenAll(Enumerable.Range(0, count).Select(async _ =>
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), timeout.Token);
                return socket;
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                socket.Dispose();
                return null;
            }
        }));
        return [.. opened.OfType<Socket>()];
    }

    /// <summary>Everything the server sends until it closes the connection; fails if it is still open after 20 s.</summary>
    private static async Task<string> ReadUntilClosedAsync(Socket socket)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var received = new StringBuilder();
        var buffer = new byte[4096];
        try
        {
            int read;
            while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0)
            {
                received.Append(Encoding.ASCII.GetString(buffer, 0, read));
            }
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"the server kept an idle connection open for 20 s (received: {received})");
        }
        return received.ToString();
    }

    public void Dispose() => Directory.Delete(_cache, recursive: true);
}
