using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Backends;

/// <summary>Weights read from a checkpoint and checked against a backend, ready to be swapped in between steps.</summary>
public abstract class PreparedWeights
{
}

/// <summary>A backend whose weights can be replaced in place by those of a checkpoint of the same architecture.</summary>
public interface IReloadableBackend
{
    /// <summary>
    /// Reads the weights of <paramref name="checkpoint"/>; safe off the step thread. Throws an <see cref="ArgumentException"/>
    /// (parameter <c>model_path</c>) naming the first difference when its architecture or shapes differ from the backend's.
    /// </summary>
    PreparedWeights PrepareWeights(Checkpoint checkpoint);

    /// <summary>Copies <paramref name="weights"/> over the backend's; call between steps, with no request running.</summary>
    void ApplyWeights(PreparedWeights weights);
}
