namespace RouteReplay.Model.Checkpoints;

/// <summary>
/// A Hugging Face model folder opened for loading: <c>config.json</c>, the optional <c>generation_config.json</c>,
/// and the memory-mapped safetensors weights (sharded through <c>model.safetensors.index.json</c> or not).
/// Reads are thread-safe.
/// </summary>
public sealed class Checkpoint : IDisposable
{
    /// <summary>The model configuration file looked for in a model folder.</summary>
    public const string ConfigFileName = "config.json";

    private readonly WeightFileSet _weights;

    private Checkpoint(string directory, ModelConfig config, GenerationConfig? generation, WeightFileSet weights)
    {
        Directory = directory;
        Config = config;
        Generation = generation;
        _weights = weights;
    }

    /// <summary>The model folder.</summary>
    public string Directory { get; }

    /// <summary>The model's architecture, from <c>config.json</c>.</summary>
    public ModelConfig Config { get; }

    /// <summary>The generation defaults from <c>generation_config.json</c>, or null when the folder has none.</summary>
    public GenerationConfig? Generation { get; }

    /// <summary>The end-of-sequence ids: the generation config's when it lists any, else the model config's.</summary>
    public IReadOnlyList<int> EosTokenIds =>
        Generation is { EosTokenIds.Count: > 0 } generation ? generation.EosTokenIds : Config.EosTokenIds;

    /// <summary>Opens the model folder <paramref name="modelDir"/> and validates its config and every weight file's header.</summary>
    /// <exception cref="CheckpointException">A file is missing, malformed or inconsistent.</exception>
    public static Checkpoint Open(string modelDir)
    {
        ArgumentNullException.ThrowIfNull(modelDir);
        var configPath = Path.Combine(modelDir, ConfigFileName);
        if (!File.Exists(configPath))
        {
            throw new CheckpointException(configPath, null, $"{ConfigFileName} not found in {modelDir} (looked for {configPath})");
        }
        var config = ModelConfig.Load(configPath);
        var generation = GenerationConfig.Load(modelDir);
        return new Checkpoint(modelDir, config, generation, WeightFileSet.Open(modelDir));
    }

    /// <summary>Whether the checkpoint holds a tensor named <paramref name="name"/>.</summary>
    public bool HasTensor(string name) => _weights.TryGetFile(name, out _);

    /// <summary>Reads tensor <paramref name="name"/> as fp32, checking that its shape is exactly <paramref name="expectedShape"/>.</summary>
    /// <exception cref="CheckpointException">The tensor is missing or has another shape.</exception>
    public float[] ReadFloat32(string name, params long[] expectedShape)
    {
        var (file, info) = Find(name, expectedShape);
        if (info.ElementCount > Array.MaxLength)
        {
            throw new CheckpointException(file.Path, name, $"{file.Path}: tensor '{name}' has {info.ElementCount} elements, too many for one array");
        }
        var values = new float[info.ElementCount];
        file.ReadAsFloat32(name, values);
        return values;
    }

    /// <summary>Reads tensor <paramref name="name"/> as fp32 into <paramref name="destination"/>, checking its shape.</summary>
    /// <exception cref="CheckpointException">The tensor is missing or has another shape.</exception>
    /// <exception cref="ArgumentException"><paramref name="destination"/> does not hold exactly the tensor's element count.</exception>
    public void ReadFloat32(string name, Span<float> destination, params long[] expectedShape)
    {
        var (file, _) = Find(name, expectedShape);
        file.ReadAsFloat32(name, destination);
    }

    /// <summary>
    /// Reads elements <c>[firstElement, firstElement + destination.Length / 2)</c> of tensor <paramref name="name"/>
    /// as bf16 (converting fp32 and f16), checking that its shape is exactly <paramref name="expectedShape"/>. Reading
    /// a tensor in slices keeps any size within a small buffer.
    /// </summary>
    /// <exception cref="CheckpointException">The tensor is missing or has another shape.</exception>
    public void ReadBFloat16(string name, long firstElement, Span<byte> destination, params long[] expectedShape)
    {
        var (file, _) = Find(name, expectedShape);
        file.ReadAsBFloat16(name, firstElement, destination);
    }

    /// <summary>Copies the bytes of U8 tensor <paramref name="name"/>, checking its dtype and that its shape is exactly <paramref name="expectedShape"/>.</summary>
    /// <exception cref="CheckpointException">The tensor is missing, not U8, or has another shape.</exception>
    public byte[] ReadBytes(string name, params long[] expectedShape)
    {
        var (file, info) = Find(name, expectedShape);
        if (info.DType != TensorDType.U8)
        {
            throw new CheckpointException(file.Path, name, $"{file.Path}: tensor '{name}' is {TensorDTypes.ToSafetensorsName(info.DType)}, expected U8");
        }
        return file.Bytes(name).ToArray();
    }

    /// <summary>Unmaps the weight files.</summary>
    public void Dispose() => _weights.Dispose();

    private (SafetensorsFile File, TensorInfo Info) Find(string name, long[] expectedShape)
    {
        if (!_weights.TryGetFile(name, out var file))
        {
            throw new CheckpointException(Directory, name, $"tensor '{name}' not found in {Directory}");
        }
        var info = file.Tensors[name];
        if (!info.Shape.AsSpan().SequenceEqual(expectedShape))
        {
            throw new CheckpointException(
                file.Path,
                name,
                $"{file.Path}: tensor '{name}' has shape {TensorShapes.Format(info.Shape)}, expected {TensorShapes.Format(expectedShape)}");
        }
        return (file, info);
    }
}
