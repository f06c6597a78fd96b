using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Backends.Cuda;

/// <summary>
/// Shared tensors checked against the served model's device layout, ready to be copied in by a CUDA backend: names
/// are those the disk loader accepts (per-expert or fused experts), shapes equal the served model's, no name twice.
/// Errors name the request's field (<c>tensors[i].name</c>, <c>tensors[i].shape</c>) as the parameter.
/// </summary>
public sealed class IpcWeights : PreparedWeights
{
    private const string TiedLmHead = "lm_head.weight";

    private IpcWeights(IReadOnlyList<(IpcTensor Source, DeviceTensor Target)> copies, bool isComplete)
    {
        Copies = copies;
        IsComplete = isComplete;
    }

    internal IReadOnlyList<(IpcTensor Source, DeviceTensor Target)> Copies { get; }

    /// <summary>True when the tensors cover every weight of the model, so nothing of the old weights is left.</summary>
    public bool IsComplete { get; }

    /// <summary>The bytes the tensors hold.</summary>
    public long Bytes => Copies.Sum(copy => copy.Target.Elements * 2);

    /// <summary>
    /// What seeds the block-key fingerprint once these weights are live: <paramref name="weightsVersion"/> alone when the
    /// tensors are the complete model (engines given the same version then share stored blocks, as with a checkpoint),
    /// else the version (or <c>ipc</c>) with a random suffix, new on every call, since part of the model sent under a
    /// repeated version must not reuse blocks computed before it.
    /// </summary>
    public string WeightsIdentity(string? weightsVersion) =>
        IsComplete && weightsVersion is not null ? weightsVersion : $"{weightsVersion ?? "ipc"}+{Guid.NewGuid():N}";

    /// <exception cref="ArgumentException">A name is unknown or given twice, or a shape differs from the served model's.</exception>
    public static IpcWeights Plan(ModelConfig config, IReadOnlyList<IpcTensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        var layout = DeviceTensorMap.Tensors(config, _ => true)
            .Concat(DeviceTensorMap.Tensors(config, _ => false))
            .DistinctBy(tensor => tensor.Name)
            .ToDictionary(tensor => tensor.Name);
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        var copies = new List<(IpcTensor, DeviceTensor)>(tensors.Count);
        for (var i = 0; i < tensors.Count; i++)
        {
            var tensor = tensors[i];
            if (!seen.TryAdd(tensor.Name, i))
            {
                throw new ArgumentException($"'tensors[{i}].name' is '{tensor.Name}', already sent as tensors[{seen[tensor.Name]}]", $"tensors[{i}].name");
            }
            if (config.TieWordEmbeddings && tensor.Name == TiedLmHead)
            {
                CheckShape(i, tensor, [config.VocabSize, config.HiddenSize]);
                continue;
            }
            if (!layout.TryGetValue(tensor.Name, out var target))
            {
                throw new ArgumentException(
                    $"'tensors[{i}].name' is '{tensor.Name}', which is not a weight of the served model (names are those of its Hugging Face checkpoint, e.g. 'model.layers.0.self_attn.q_proj.weight')",
                    $"tensors[{i}].name");
            }
            CheckShape(i, tensor, target.Shape);
            copies.Add((tensor, target));
        }
        var complete = DeviceTensorMap.Tensors(config, seen.ContainsKey).All(tensor => seen.ContainsKey(tensor.Name));
        return new IpcWeights(copies, complete);
    }

    private static void CheckShape(int index, IpcTensor tensor, long[] expected)
    {
        if (!tensor.Shape.SequenceEqual(expected))
        {
            throw new ArgumentException(
                $"'tensors[{index}].shape' is [{string.Join(", ", tensor.Shape)}], but the served model's '{tensor.Name}' is [{string.Join(", ", expected)}]",
                $"tensors[{index}].shape");
        }
    }
}
