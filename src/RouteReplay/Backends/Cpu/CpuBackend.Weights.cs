using RouteReplay.Cache;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Backends.Cpu;

/// <summary>Weight reload: a checkpoint of the same architecture and shapes is read, then swapped in between steps.</summary>
public sealed partial class CpuBackend : IReloadableBackend
{
    public PreparedWeights PrepareWeights(Checkpoint checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        if (!checkpoint.Config.Equals(Config))
        {
            throw new ArgumentException(
                $"the checkpoint in '{checkpoint.Directory}' does not match the served model's architecture: {FirstDifference(Config, checkpoint.Config)}",
                "model_path");
        }
        return new CpuWeights(ModelWeights.Load(checkpoint));
    }

    /// <summary>
    /// Makes the prepared weights live; the step thread calls this between steps, so no forward sees a mix. Released
    /// weights (a host copy, or none) are replaced: the backend's weights are resident again.
    /// </summary>
    public void ApplyWeights(PreparedWeights weights)
    {
        if (weights is not CpuWeights cpu)
        {
            throw new ArgumentException("the weights were not prepared by a CPU backend", nameof(weights));
        }
        _weights = cpu.Weights;
        _hostCopy = null;
    }

    /// <summary>The first line where the two configs' canonical fingerprint texts differ, as "name: served vs new".</summary>
    private static string FirstDifference(ModelConfig served, ModelConfig candidate)
    {
        var a = ModelFingerprint.ArchitectureText(served).Split('\n');
        var b = ModelFingerprint.ArchitectureText(candidate).Split('\n');
        for (var i = 0; i < Math.Min(a.Length, b.Length); i++)
        {
            if (a[i] != b[i])
            {
                var name = a[i].Split('=')[0];
                return $"{name} is {a[i][(name.Length + 1)..]} here but {b[i][(name.Length + 1)..]} in the new checkpoint";
            }
        }
        return "their end-of-sequence token ids differ";
    }

    private sealed class CpuWeights(ModelWeights weights) : PreparedWeights
    {
        public ModelWeights Weights { get; } = weights;
    }
}
