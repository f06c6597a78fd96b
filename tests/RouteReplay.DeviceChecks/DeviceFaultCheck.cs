using RouteReplay.Backends;
using RouteReplay.Backends.Cuda;
using RouteReplay.Engine;
using RouteReplay.Model.Presets;

namespace RouteReplay.DeviceChecks;

/// <summary>
/// A real sticky CUDA error (a kernel writing through an invalid address, injected between steps while requests run):
/// the next step fails with <see cref="DeviceFaultException"/>, every request in flight ends with it promptly (no hang),
/// the step loop reports the fault, and later requests are refused at once.
/// </summary>
public static class DeviceFaultCheck
{
    public static CheckResult Run(string preset)
    {
        var config = ModelPresets.Get(preset).Config;
        var options = new EngineOptions { Device = ComputeDevice.Cuda, NumBlocks = 512, MaxNumSeqs = 8, MaxModelLen = 2048, WeightsVersion = "fault-check" };
        var engine = new AsyncEngine(LoadedModel.LoadDummy(config, 0, options));
        try
        {
            var requests = Enumerable.Range(0, 4).Select(i => engine.GenerateAsync(new EngineRequest
            {
                RequestId = $"running-{i}",
                PromptTokenIds = Enumerable.Range(100 + i, 40).ToArray(),
                Sampling = new SamplingParams { Temperature = 0f, MaxTokens = 1500, IgnoreEos = true },
            })).ToArray();
            var started = DateTime.UtcNow;
            while (engine.InvokeAsync(e => e.Stats.GeneratedTokens).GetAwaiter().GetResult() < 20 && DateTime.UtcNow - started < TimeSpan.FromSeconds(60))
            {
                Thread.Sleep(20);
            }
            Exception? injected = null;
            try
            {
                engine.InvokeAsync(e => { ((CudaBackend)e.Backend).InjectDeviceFault(); return true; }).GetAwaiter().GetResult();
            }
            catch (DeviceFaultException e)
            {
                injected = e;
            }
            var ended = Task.WhenAll(requests).Wait(TimeSpan.FromSeconds(30));
            var failedWithFault = ended ? requests.Count(r => r.Result.Error is DeviceFaultException) : 0;
            var loopFault = engine.Failed.Wait(TimeSpan.FromSeconds(10)) ? engine.Failed.Result : null;
            var refused = false;
            try
            {
                engine.GenerateAsync(new EngineRequest { RequestId = "after", PromptTokenIds = [1, 2, 3], Sampling = new SamplingParams { MaxTokens = 2 } })
                    .Wait(TimeSpan.FromSeconds(10));
            }
            catch (AggregateException e) when (e.InnerException is InvalidOperationException)
            {
                refused = true;
            }
            var passed = injected is not null && ended && failedWithFault == requests.Length && loopFault is DeviceFaultException && refused;
            var summary = $"{preset}: injected fault reported {(injected is null ? "no" : "yes")}; requests ended {ended}, {failedWithFault}/{requests.Length} with the device fault; " +
                $"step loop fault {loopFault?.GetType().Name ?? "none"}; later request refused {refused}; message: {loopFault?.Message}";
            return new CheckResult("device-fault", passed, summary, w =>
            {
                w.WriteBoolean("requests_ended", ended);
                w.WriteNumber("requests_failed_with_fault", failedWithFault);
                w.WriteBoolean("later_request_refused", refused);
                w.WriteString("fault", loopFault?.Message ?? "");
            });
        }
        finally
        {
            engine.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(30));
        }
    }
}
