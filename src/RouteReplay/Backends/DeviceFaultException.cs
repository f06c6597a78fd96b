namespace RouteReplay.Backends;

/// <summary>
/// The device a backend runs on is unusable for the rest of this process (on a GPU: a sticky CUDA error such as an
/// illegal address). Unlike other forward failures it is never confined to one step: the engine stops, every request
/// ends with an error, and a server exits non-zero so that a supervisor restarts it.
/// </summary>
public sealed class DeviceFaultException(string message) : Exception(message);
