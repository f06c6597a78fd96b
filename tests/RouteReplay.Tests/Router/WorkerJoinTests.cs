using Microsoft.Extensions.Logging.Abstractions;
using RouteReplay.Disaggregation;
using RouteReplay.Server.Router;

namespace RouteReplay.Tests.Router;

/// <summary>
/// A server that asks to join the workers (<c>/add_worker</c>) is checked as the workers were at startup: a plain
/// <c>serve</c> (no <c>--role</c>), of the workers' model and weights version; each refusal one sentence naming it.
/// </summary>
public sealed class WorkerJoinTests
{
    private static Upstream Server(int port, string? weightVersion = "test") =>
        new(ServerRole.Both, new Uri($"http://127.0.0.1:{port}"), port, NullLogger.Instance) { WeightVersion = weightVersion };

    private static ServerInfo Info(string role = "both", string model = "tiny", string? weightVersion = "test") =>
        new(role, null, weightVersion, model, null, null);

    [Fact]
    public void A_server_joins_only_as_a_plain_serve_of_the_workers_model_and_weights_version()
    {
        var joining = Server(9003);
        Upstream[] workers = [Server(9001), Server(9002)];

        Assert.Null(FleetCheck.RefuseWorker(joining, Info(), "tiny", workers));
        Assert.Null(FleetCheck.RefuseWorker(joining, Info(weightVersion: "v2"), "tiny", []));
        Assert.Null(FleetCheck.RefuseWorker(joining, Info(weightVersion: null), "tiny", workers));
        Assert.Equal(
            "http://127.0.0.1:9003 is a server with role 'prefill'; start it with 'routereplay serve' (no --role)",
            FleetCheck.RefuseWorker(joining, Info(role: "prefill"), "tiny", workers));
        Assert.Equal("http://127.0.0.1:9003 serves the model 'other', the workers 'tiny'", FleetCheck.RefuseWorker(joining, Info(model: "other"), "tiny", workers));
        Assert.Equal(
            "http://127.0.0.1:9003 has weights version 'v2', the workers 'test': update it to the workers' weights first (its /update_weights_from_disk)",
            FleetCheck.RefuseWorker(joining, Info(weightVersion: "v2"), "tiny", workers));
    }
}
