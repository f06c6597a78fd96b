namespace RouteReplay.Backends.Cuda;

/// <summary>A GPU's measured ceilings: what rooflines are computed against.</summary>
/// <param name="CopyGigabytesPerSecond">Device-to-device copy, bytes read plus bytes written per second.</param>
/// <param name="ReadGigabytesPerSecond">A read-only pass (a reduction over several GB, far past the L2 cache).</param>
/// <param name="GemmTeraflops">A bf16 8192^3 cuBLAS GEMM.</param>
public sealed record DeviceCeilings(double CopyGigabytesPerSecond, double ReadGigabytesPerSecond, double GemmTeraflops)
{
    /// <summary>The memory bandwidth a roofline divides by: the larger of the copy and read rates.</summary>
    public double BandwidthGigabytesPerSecond => Math.Max(CopyGigabytesPerSecond, ReadGigabytesPerSecond);
}
