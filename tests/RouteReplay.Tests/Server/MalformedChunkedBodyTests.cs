using System.Text;
using Microsoft.Extensions.Logging;
using RouteReplay.Disaggregation;
using RouteReplay.Server.Router;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Server;

/// <summary>A plain server, and a router over a prefill and a decode server, all in this process.</summary>
public sealed class ServeAndRouterFixture : IAsyncLifetime
{
    public TinyModelFixture Model { get; } = new();

    public TestServer Serve { get; private set; } = null!;

    public TestServer Prefill { get; private set; } = null!;

    public TestServer Decode { get; private set; } = null!;

    public RouterServer Router { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Serve = await TestServer.StartAsync(Model.Directory);
        Prefill = await TestServer.StartAsync(Model.Directory, o => o with { Disaggregation = new DisaggregationOptions { Role = ServerRole.Prefill, ClusterKey = TestClusterKey.Key } });
        Decode = await TestServer.StartAsync(Model.Directory, o => o with { Disaggregation = new DisaggregationOptions { Role = ServerRole.Decode, ClusterKey = TestClusterKey.Key } });
        Router = await RouterServer.CreateAsync(
            new RouterOptions { PrefillServers = [Prefill.BaseAddress], DecodeServers = [Decode.BaseAddress], Port = 0, ClusterKey = TestClusterKey.Key },
            logging => logging.SetMinimumLevel(LogLevel.Warning));
        await Router.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await Router.DisposeAsync();
        await Decode.DisposeAsync();
        await Prefill.DisposeAsync();
        await Serve.DisposeAsync();
        Model.Dispose();
    }
}

/// <summary>A chunked request body whose chunk size is not a hexadecimal number, or overflows, is the client's fault: 400 on every server.</summary>
public sealed class MalformedChunkedBodyTests(ServeAndRouterFixture fixture) : IClassFixture<ServeAndRouterFixture>
{
    public static TheoryData<string, string> Cases => new()
    {
        { "serve", "zz" },
        { "serve", "fffffffffffffffffffff" },
        { "router", "zz" },
        { "router", "fffffffffffffffffffff" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task A_malformed_chunk_size_is_a_400_that_closes_the_connection_and_the_server_keeps_serving(string server, string chunkSize)
    {
        var address = server == "router" ? fixture.Router.BaseAddress : fixture.Serve.BaseAddress;
        const string Json = """{"text": "chunked", "sampling_params": {"max_new_tokens": 1}}""";
        var request = Encoding.ASCII.GetBytes(
            $"POST /generate HTTP/1.1\r\nHost: {address.Authority}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
            $"{chunkSize}\r\n{Json}\r\n0\r\n\r\n");

        var (status, response) = await RawHttp.SendAsync(address, request);

        Assert.True(status == 400, $"{server}, chunk size '{chunkSize}': {response}");
        Assert.Contains("Connection: close", response, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("\"code\":\"malformed_body\"", response, StringComparison.Ordinal);
        Assert.Contains("the request body could not be read", response, StringComparison.Ordinal);

        using var client = new HttpClient { BaseAddress = address };
        using var after = await client.PostAsync("/generate", new StringContent(Json, Encoding.UTF8, "application/json"));
        Assert.Equal(200, (int)after.StatusCode);
    }
}
