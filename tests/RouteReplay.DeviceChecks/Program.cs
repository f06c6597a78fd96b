using RouteReplay.Backends.Cuda;
using RouteReplay.DeviceChecks;

// The checks that need a GPU, run by scripts/device/run.sh from a self-contained publish on the GPU machine:
//   routereplay-device-checks OUT_DIR cpu-vs-cuda PRESET | lifecycle PRESET | dummy PRESET [TOKENS] | hf-compare MODEL_DIR REFERENCE_JSON
//                                     | device-fault PRESET | batch-invariance SERVER_URL NAME | cuda-graphs PRESET | memory-release PRESET
//                                     | families FIXTURES_DIR (CPU only: the families against transformers' tiny checkpoints)
// Each check prints one line "CHECK name PASS|FAIL summary" and writes OUT_DIR/name.json; exit code 1 when any failed.
if (args.Length < 2)
{
    Console.Error.WriteLine("usage: routereplay-device-checks OUT_DIR (cpu-vs-cuda PRESET | lifecycle PRESET | dummy PRESET [TOKENS] | hf-compare MODEL_DIR REFERENCE_JSON | device-fault PRESET | batch-invariance SERVER_URL NAME | cuda-graphs PRESET | memory-release PRESET | families FIXTURES_DIR)");
    return 2;
}
var output = Directory.CreateDirectory(args[0]).FullName;
var work = Directory.CreateTempSubdirectory("routereplay-device-checks-").FullName;
var results = new List<CheckResult>();
try
{
    switch (args[1])
    {
        case "cpu-vs-cuda":
            results.Add(CpuVsCudaCheck.Run(args[2], work));
            break;
        case "lifecycle":
            foreach (var result in LifecycleCheck.Run(args[2], work))
            {
                results.Add(result);
                Console.WriteLine(result.Line);
            }
            break;
        case "dummy":
            results.Add(DummyCheck.Run(args[2], args.Length > 3 ? int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture) : 2048));
            break;
        case "hf-compare":
            results.Add(HfCompareCheck.Run(args[2], args[3]));
            break;
        case "device-fault":
            results.Add(DeviceFaultCheck.Run(args[2]));
            break;
        case "cuda-graphs":
            results.Add(CudaGraphsCheck.Run(args[2]));
            break;
        case "batch-invariance":
            results.Add(BatchInvarianceCheck.Run(args[2], args[3]));
            break;
        case "families":
            foreach (var result in FamilyReferenceCheck.Run(args[2]))
            {
                results.Add(result);
                Console.WriteLine(result.Line);
            }
            break;
        case "memory-release":
            results.Add(MemoryReleaseCheck.Run(args[2], work));
            break;
        default:
            Console.Error.WriteLine($"unknown check '{args[1]}'");
            return 2;
    }
}
catch (CudaUnavailableException e)
{
    Console.WriteLine($"CHECK {args[1]} FAIL {e.Message}");
    return 1;
}
finally
{
    Directory.Delete(work, recursive: true);
}
foreach (var result in results)
{
    if (args[1] is not ("lifecycle" or "families"))
    {
        Console.WriteLine(result.Line);
    }
    result.Write(output);
}
return results.All(r => r.Passed) ? 0 : 1;
