using RouteReplay.Backends;
using RouteReplay.Backends.Cuda;
using RouteReplay.Cache;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Storage;

namespace RouteReplay.Engine;

/// <summary>A checkpoint's weights, read and checked, with the fingerprint that seeds block keys once they are live.</summary>
public sealed record WeightUpdate(PreparedWeights Weights, UInt128 Fingerprint, string WeightsIdentity);

/// <summary>Control operations for a serving process: flush the prefix cache, abort everything, replace the weights.</summary>
public sealed partial class LlmEngine
{
    /// <summary>The served model's architecture (immutable; safe from any thread).</summary>
    public ModelConfig ModelConfig => _backend.Config;

    /// <summary>The root of every block key chain, derived from the model fingerprint; changes with the weights.</summary>
    public BlockKey RootKey => _rootKey;

    /// <summary>The token ids that end a choice unless <see cref="SamplingParams.IgnoreEos"/> (immutable).</summary>
    public IReadOnlySet<int> EosTokenIds => _eosTokenIds;

    /// <summary>
    /// Drops every prefix-cache key in the device and host tiers: later requests compute their prompts again, or load
    /// them from the block store, which a flush leaves alone (its keys are fingerprinted; see <see cref="BlockStoreTier"/>).
    /// Store lookups in flight are discarded when they complete.
    /// </summary>
    public void FlushCache()
    {
        _pool.ResetPrefixCache();
        _host?.ResetPrefixCache();
        _store?.Reset();
    }

    /// <summary>Aborts every unfinished request; returns how many there were.</summary>
    public int AbortAll()
    {
        var states = _requests.Values.Select(entry => entry.State).ToArray();
        foreach (var state in states)
        {
            Abort(state);
        }
        return states.Length;
    }

    /// <summary>
    /// Reads the weights in <paramref name="directory"/> and checks them against the served architecture. Safe off the
    /// step thread (it reads only the immutable config). The fingerprint covers <paramref name="weightsVersion"/>, or a
    /// hash of the weight files when it is null.
    /// </summary>
    /// <exception cref="CheckpointException">The folder is not a readable checkpoint.</exception>
    /// <exception cref="ArgumentException">Its architecture or shapes differ (parameter <c>model_path</c>).</exception>
    public WeightUpdate PrepareWeightUpdate(string directory, string? weightsVersion)
    {
        if (_backend is not IReloadableBackend reloadable)
        {
            throw new NotSupportedException("this backend cannot reload weights");
        }
        using var checkpoint = Checkpoint.Open(directory);
        var weights = reloadable.PrepareWeights(checkpoint);
        var identity = weightsVersion ?? ModelFingerprint.HashWeights(directory);
        return new WeightUpdate(weights, ModelFingerprint.Compute(checkpoint.Config, identity, PayloadLayout), identity);
    }

    /// <summary>
    /// Checks tensors another process shares through CUDA IPC against the served architecture (safe off the step
    /// thread). Block keys get the fingerprint of <see cref="IpcWeights.WeightsIdentity"/>.
    /// </summary>
    /// <exception cref="ArgumentException">A tensor's name or shape does not fit (parameter <c>tensors[i].name</c> or <c>.shape</c>).</exception>
    /// <exception cref="NotSupportedException">The backend is not the CUDA one.</exception>
    public WeightUpdate PrepareIpcWeightUpdate(IReadOnlyList<IpcTensor> tensors, string? weightsVersion)
    {
        var weights = IpcWeights.Plan(ModelConfig, tensors);
        if (_backend is not CudaBackend)
        {
            throw new NotSupportedException("update_weights_from_ipc needs --device cuda: the engine copies the shared tensors on its GPU");
        }
        var identity = weights.WeightsIdentity(weightsVersion);
        return new WeightUpdate(weights, ModelFingerprint.Compute(ModelConfig, identity, PayloadLayout), identity);
    }

    /// <summary>
    /// Makes <paramref name="update"/> live: copies the weights, re-roots block keys at the new fingerprint and clears the
    /// prefix index, so no KV or routing computed with the old weights is ever reused. Only with no unfinished request.
    /// Allowed while the memory is released: the new weights are then resident, and the KV cache stays as it is.
    /// </summary>
    public void ApplyWeightUpdate(WeightUpdate update)
    {
        ArgumentNullException.ThrowIfNull(update);
        if (HasUnfinishedRequests)
        {
            throw new InvalidOperationException($"weights can only change with no request running ({_requests.Count} are)");
        }
        ((IReloadableBackend)_backend).ApplyWeights(update.Weights);
        Fingerprint = update.Fingerprint;
        WeightsIdentity = update.WeightsIdentity;
        _rootKey = BlockKey.Root(update.Fingerprint);
        FlushCache();
        if (_store is not null)
        {
            _store.Fingerprint = update.Fingerprint;
        }
        PublishMemoryState();
    }
}
