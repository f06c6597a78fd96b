namespace RouteReplay.Backends;

/// <summary>Where a backend's weights are while it shares its device with another process.</summary>
public enum WeightsResidence
{
    /// <summary>On the device, ready for a forward.</summary>
    Resident,

    /// <summary>Released from the device; a copy in host memory is copied back at <see cref="IReleasableBackend.RestoreWeights"/>.</summary>
    HostCopy,

    /// <summary>Released and dropped: only new weights (<see cref="IReloadableBackend.ApplyWeights"/>) make the backend usable again.</summary>
    Discarded,
}

/// <summary>
/// A backend that gives its device memory back while another process (a trainer) uses the device, and takes it again:
/// the KV cache (every block's content is lost) and the weights (kept in host memory or dropped).
/// </summary>
/// <remarks>
/// The caller guarantees that nothing refers to the released memory: no forward and no block copy runs while the KV
/// cache or the weights are released, and every copy started before the release has completed (the release itself
/// waits for the device). <see cref="IReloadableBackend.ApplyWeights"/> is allowed while the weights are released and
/// makes them <see cref="WeightsResidence.Resident"/> (the new weights replace any host copy).
/// </remarks>
public interface IReleasableBackend
{
    /// <summary>True from <see cref="ReleaseKvCache"/> until <see cref="RestoreKvCache"/>.</summary>
    bool KvCacheReleased { get; }

    WeightsResidence Weights { get; }

    /// <summary>Frees the KV cache; <see cref="IModelBackend.NumBlocks"/> stays what it was.</summary>
    void ReleaseKvCache();

    /// <summary>Allocates the KV cache of <see cref="IModelBackend.NumBlocks"/> blocks again; its content is undefined.</summary>
    void RestoreKvCache();

    /// <summary>
    /// Frees the weights' device memory, first copying them to host memory when <paramref name="keepHostCopy"/>. On
    /// weights already released, <paramref name="keepHostCopy"/> false drops the host copy, and true changes nothing.
    /// </summary>
    void ReleaseWeights(bool keepHostCopy);

    /// <summary>
    /// Puts the host copy back on the device (nothing to do when resident); throws an
    /// <see cref="InvalidOperationException"/> when the weights were discarded.
    /// </summary>
    void RestoreWeights();
}
