using System.Net;
using System.Net.Sockets;
using System.Text;
using RouteReplay.Disaggregation;
using RouteReplay.Engine;
using RouteReplay.Server.Disaggregation;
using RouteReplay.Tests.Cli;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Disaggregation;

/// <summary>
/// Real processes: a prefill server with the tests' cluster key, a decode server with the key and the prefill server
/// as its only <c>--prefill-peers</c> entry, and a decode server with neither.
/// </summary>
public sealed class PrefillTrustFixture : IAsyncLifetime
{
    public TinyModelFixture Model { get; } = new();

    public string Cache { get; } = Directory.CreateTempSubdirectory("routereplay-pd-trust-").FullName;

    public CliProcess Prefill { get; private set; } = null!;

    /// <summary>The decode server with the cluster key (from a file) and <c>--prefill-peers</c> naming <see cref="Prefill"/>.</summary>
    public CliProcess Keyed { get; private set; } = null!;

    /// <summary>The decode server with neither a key nor peers.</summary>
    public CliProcess Open { get; private set; } = null!;

    public string PrefillAddress { get; private set; } = "";

    private string[] Serve(params string[] extra) =>
        ["serve", "--model", Model.Directory, "--served-model-name", "tiny", "--port", "0", "--num-blocks", "256", "--max-num-seqs", "8", "--weights-version", "test", .. extra];

    public async Task InitializeAsync()
    {
        var open = CliProcess.StartAsync(Cache, Serve("--role", "decode"));
        Prefill = await CliProcess.StartAsync(Cache, Serve(["--role", "prefill", .. TestClusterKey.Flags]));
        PrefillAddress = $"127.0.0.1:{await Prefill.TransferPortAsync()}";
        var keyFile = Path.Combine(Cache, "cluster.key");
        await File.WriteAllTextAsync(keyFile, TestClusterKey.Value + "\n");
        Keyed = await CliProcess.StartAsync(Cache, Serve("--role", "decode", "--prefill-peers", PrefillAddress, "--cluster-key-file", keyFile));
        Open = await open;
    }

    public async Task DisposeAsync()
    {
        foreach (var process in new[] { Prefill, Keyed, Open })
        {
            if (process is not null)
            {
                await process.DisposeAsync();
            }
        }
        Model.Dispose();
        Directory.Delete(Cache, recursive: true);
    }
}

/// <summary>
/// A decode server connects only to prefill servers it trusts: addresses its router signed with the cluster key, or
/// addresses on its <c>--prefill-peers</c> list. Whatever else a client names in <c>X-RouteReplay-Prefill</c> is never
/// connected to (a listener the test owns sees no connection): the prompt is computed locally, the answer says why,
/// and the log says it at a bounded rate. The router refuses at startup a fleet whose decode servers trust nothing.
/// </summary>
[Collection(PdProcessCollection.Name)]
public sealed class PrefillTrustTests(PrefillTrustFixture fixture) : IClassFixture<PrefillTrustFixture>
{
    private static EngineRequest Request(string id) => new()
    {
        RequestId = id,
        PromptTokenIds = [.. Enumerable.Range(300, 40)],
        Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 4 },
    };

    /// <summary>A TCP listener of the test's own on loopback, which records whether anything connected to it.</summary>
    private sealed class Bait : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);

        public Bait() => _listener.Start();

        public string Address => $"127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";

        /// <summary>True when a connection waits to be accepted (one that connected and closed still waits).</summary>
        public bool WasConnectedTo => _listener.Pending();

        /// <summary>Accepts the next connection and closes it at once.</summary>
        public async Task RefuseNextAsync()
        {
            using var socket = await _listener.AcceptSocketAsync().WaitAsync(TimeSpan.FromMinutes(1));
        }

        public void Dispose() => _listener.Dispose();
    }

    private static async Task<HttpResponseMessage> Answered(Task<HttpResponseMessage> call)
    {
        var response = await call;
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return response;
    }

    private static string Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : "";

    [Fact]
    public async Task A_decode_server_without_a_cluster_key_or_peers_never_connects_to_an_address_a_client_names()
    {
        using var bait = new Bait();
        const string Ignored = "ignored the X-RouteReplay-Prefill header of a request from 127.0.0.1: this decode server trusts no prefill server (give it the router's --cluster-key, or --prefill-peers); its prompt is computed here";

        var answers = new List<(string Prompt, string Ignored)>();
        for (var i = 0; i < 3; i++)
        {
            using var response = await Answered(GenerateCalls.SendAsync(fixture.Open.Client, Request($"open-{i}"), bait.Address, TestClusterKey.Key));
            answers.Add((Header(response, FleetHeaders.Prompt), Header(response, FleetHeaders.PrefillIgnored)));
        }

        Assert.False(bait.WasConnectedTo, "the decode server connected to the address the client named");
        Assert.All(answers, a => Assert.Equal((FleetHeaders.Local, "this decode server trusts no prefill server (give it the router's --cluster-key, or --prefill-peers)"), a));
        var metrics = await fixture.Open.MetricsAsync();
        Assert.Equal(0, metrics.Where(m => m.Key.StartsWith("routereplay_pd_transfers_total", StringComparison.Ordinal)).Sum(m => m.Value));
        using var marker = await fixture.Open.Client.PostAsync("/update_weights_from_disk", new StringContent($$"""{"model_path": "{{fixture.Model.Directory}}", "weight_version": "test"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(200, (int)marker.StatusCode);
        await fixture.Open.WaitForOutputAsync("Weights updated from", TimeSpan.FromSeconds(60));
        Assert.Single(fixture.Open.Lines(Ignored));
    }

    [Fact]
    public async Task A_decode_server_with_a_cluster_key_connects_only_to_addresses_signed_with_it()
    {
        using var bait = new Bait();

        using var unsigned = await Answered(GenerateCalls.SendAsync(fixture.Keyed.Client, Request("unsigned"), bait.Address, key: null));
        using var forged = await Answered(GenerateCalls.SendAsync(fixture.Keyed.Client, Request("forged"), bait.Address, new ClusterKey("a-key-the-client-made-up")));

        Assert.False(bait.WasConnectedTo, "the decode server connected to an address that was not signed with its key");
        Assert.Equal(FleetHeaders.Local, Header(unsigned, FleetHeaders.Prompt));
        Assert.Equal("it is not signed with this server's --cluster-key and it names no address of --prefill-peers", Header(unsigned, FleetHeaders.PrefillIgnored));
        Assert.Equal(FleetHeaders.Local, Header(forged, FleetHeaders.Prompt));

        var signed = Answered(GenerateCalls.SendAsync(fixture.Keyed.Client, Request("signed-bait"), bait.Address, TestClusterKey.Key));
        await bait.RefuseNextAsync();
        using (var response = await signed)
        {
            Assert.Equal(FleetHeaders.Local, Header(response, FleetHeaders.Prompt));
            Assert.Equal(bait.Address, Header(response, FleetHeaders.PrefillFailed));
        }
        using (var transferred = await Answered(GenerateCalls.SendAsync(fixture.Keyed.Client, Request("signed"), fixture.PrefillAddress, TestClusterKey.Key)))
        {
            Assert.Equal(FleetHeaders.Transferred, Header(transferred, FleetHeaders.Prompt));
            Assert.Equal(fixture.PrefillAddress, Header(transferred, FleetHeaders.PrefillServer));
        }
    }

    [Fact]
    public async Task Without_the_routers_signature_a_decode_server_uses_only_its_prefill_peers()
    {
        using var bait = new Bait();

        using var response = await Answered(GenerateCalls.SendAsync(fixture.Keyed.Client, Request("peers"), $"{bait.Address},{fixture.PrefillAddress}", key: null));

        Assert.False(bait.WasConnectedTo, "the decode server connected to an address not on its --prefill-peers list");
        Assert.Equal(FleetHeaders.Transferred, Header(response, FleetHeaders.Prompt));
        Assert.Equal(fixture.PrefillAddress, Header(response, FleetHeaders.PrefillServer));
        Assert.Equal("", Header(response, FleetHeaders.PrefillFailed));
    }

    [Fact]
    public void A_router_refuses_to_start_over_a_decode_server_that_trusts_no_prefill_server_or_over_another_key()
    {
        var (exit, _, stderr) = GenerateCliTests.RunCli(fixture.Cache, ["router", "--port", "0", "--prefill", fixture.Prefill.Url.ToString(), "--decode", fixture.Open.Url.ToString(), "--startup-timeout-seconds", "30", .. TestClusterKey.Flags]);
        Assert.Equal(1, exit);
        Assert.Contains($"--decode {fixture.Open.Url.ToString().TrimEnd('/')} trusts no prefill server, so it would compute every prompt itself: give it the router's --cluster-key (or --prefill-peers)", stderr);

        (exit, _, stderr) = GenerateCliTests.RunCli(fixture.Cache, "router", "--port", "0", "--prefill", fixture.Prefill.Url.ToString(), "--decode", fixture.Keyed.Url.ToString(), "--startup-timeout-seconds", "30", "--cluster-key", "not-the-fleets-key-at-all");
        Assert.Equal(1, exit);
        Assert.Contains($"--prefill {fixture.Prefill.Url.ToString().TrimEnd('/')} has another --cluster-key than the router: give the router and every server the same key", stderr);
    }
}
