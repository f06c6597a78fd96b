using RouteReplay.Backends;
using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Engine;

/// <summary>
/// A device fault (a poisoned GPU context) is never confined to one step: the engine stops, every request ends with the
/// fault, and later steps fail at once instead of running on a device that can no longer compute.
/// </summary>
public sealed class DeviceFaultTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private EngineRequest Request(string id, string text) => new()
    {
        RequestId = id,
        PromptTokenIds = model.Tokenizer.Encode(text),
        Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 8, IgnoreEos = true },
    };

    [Fact]
    public void A_device_fault_stops_the_engine_and_fails_every_request()
    {
        var options = new EngineOptions { NumBlocks = 32, MaxNumSeqs = 1, SwapSpaceGiB = 0 };
        using var engine = EngineRunner.CreateWrapped(model, options, inner => new FaultyBackend(inner, FaultyBackend.OnForward(2), error: m => new DeviceFaultException(m)));
        var runner = new EngineRunner();
        engine.AddRequest(Request("running", "This request is running when the device faults"), runner);
        engine.AddRequest(Request("waiting", "This request waits for its turn"), runner);
        engine.Step();

        var fault = Assert.Throws<DeviceFaultException>(() => engine.Step());
        Assert.Same(fault, runner.Results["running"].Error);
        Assert.Same(fault, runner.Results["waiting"].Error);
        Assert.Equal(0, engine.Stats.StepFailures);
        Assert.False(engine.HasUnfinishedRequests);
        Assert.Contains("has stopped", Assert.Throws<InvalidOperationException>(() => engine.Step()).Message);
    }

    [Fact]
    public async Task The_async_engine_reports_the_fault_once_its_requests_have_failed()
    {
        await using var engine = new AsyncEngine(EngineRunner.CreateWrapped(model, new EngineOptions { NumBlocks = 32 }, inner => new FaultyBackend(inner, FaultyBackend.OnForward(3), error: m => new DeviceFaultException(m))));
        var result = await engine.GenerateAsync(Request("doomed", "This request sees the device fault"));
        Assert.IsType<DeviceFaultException>(result.Error);
        var fault = await engine.Failed.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.IsType<DeviceFaultException>(fault);
        Assert.Same(fault, engine.Fault);
        await Assert.ThrowsAsync<InvalidOperationException>(() => engine.GenerateAsync(Request("after", "Nothing runs after a device fault")));
    }
}
