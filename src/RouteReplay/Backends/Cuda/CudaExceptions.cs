namespace RouteReplay.Backends.Cuda;

/// <summary>
/// The CUDA backend cannot run on this machine: the NVIDIA driver, the native library or a usable GPU is missing.
/// The message names what is missing in one line.
/// </summary>
public sealed class CudaUnavailableException(string message) : Exception(message);

/// <summary>A CUDA or cuBLAS call failed (out of memory, a faulty kernel, a lost device).</summary>
public sealed class CudaException(string message) : Exception(message);
