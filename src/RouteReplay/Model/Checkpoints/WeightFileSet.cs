namespace RouteReplay.Model.Checkpoints;

/// <summary>
/// The safetensors files of a checkpoint folder and which file holds each tensor: from
/// <c>model.safetensors.index.json</c> when present, else from every <c>*.safetensors</c> file in the folder.
/// </summary>
internal sealed class WeightFileSet : IDisposable
{
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly List<SafetensorsFile> _files;
    private readonly Dictionary<string, SafetensorsFile> _fileByTensor;

    private WeightFileSet(List<SafetensorsFile> files, Dictionary<string, SafetensorsFile> fileByTensor)
    {
        _files = files;
        _fileByTensor = fileByTensor;
    }

    public static WeightFileSet Open(string modelDir)
    {
        var indexPath = Path.Combine(modelDir, IndexFileName);
        return File.Exists(indexPath) ? OpenFromIndex(modelDir, indexPath) : OpenAllInFolder(modelDir);
    }

    public bool TryGetFile(string tensorName, out SafetensorsFile file) => _fileByTensor.TryGetValue(tensorName, out file!);

    public void Dispose()
    {
        foreach (var file in _files)
        {
            file.Dispose();
        }
    }

    private static WeightFileSet OpenFromIndex(string modelDir, string indexPath)
    {
        var weightMap = ReadWeightMap(indexPath);
        var files = new List<SafetensorsFile>();
        try
        {
            var opened = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            var fileByTensor = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var (tensor, relativePath) in weightMap)
            {
                if (!opened.TryGetValue(relativePath, out var file))
                {
                    file = OpenListedFile(modelDir, indexPath, tensor, relativePath);
                    files.Add(file);
                    opened.Add(relativePath, file);
                }
                if (!file.Tensors.ContainsKey(tensor))
                {
                    throw new CheckpointException(
                        file.Path, tensor, $"{indexPath} maps tensor '{tensor}' to {file.Path}, which does not contain it");
                }
                if (!fileByTensor.TryAdd(tensor, file))
                {
                    throw new CheckpointException(indexPath, tensor, $"{indexPath} lists tensor '{tensor}' twice in weight_map");
                }
            }
            return new WeightFileSet(files, fileByTensor);
        }
        catch
        {
            files.ForEach(file => file.Dispose());
            throw;
        }
    }

    private static List<(string Tensor, string File)> ReadWeightMap(string indexPath)
    {
        using var document = JsonConfigDocument.Parse(JsonConfigDocument.ReadText(indexPath), indexPath);
        var fields = new JsonObjectReader(document.RootElement, indexPath);
        var weightMap = fields.OptionalObject("weight_map") ?? throw fields.Error("weight_map", "is required but missing");
        return weightMap.Keys().Select(tensor => (tensor, weightMap.RequiredString(tensor))).ToList();
    }

    private static SafetensorsFile OpenListedFile(string modelDir, string indexPath, string tensor, string relativePath)
    {
        var root = Path.GetFullPath(modelDir);
        var path = Path.GetFullPath(Path.Combine(root, relativePath));
        if (!path.StartsWith(Path.TrimEndingDirectorySeparator(root) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
        {
            throw new CheckpointException(
                indexPath, tensor, $"{indexPath} maps tensor '{tensor}' to '{relativePath}', which is outside {modelDir}");
        }
        if (!File.Exists(path))
        {
            throw new CheckpointException(
                path, tensor, $"{indexPath} maps tensor '{tensor}' to {path}, which does not exist");
        }
        return SafetensorsFile.Open(path);
    }

    private static WeightFileSet OpenAllInFolder(string modelDir)
    {
        var paths = Directory.GetFiles(modelDir, "*.safetensors").Order(StringComparer.Ordinal).ToArray();
        if (paths.Length == 0)
        {
            throw new CheckpointException(
                modelDir, null, $"{modelDir} holds neither {IndexFileName} nor any *.safetensors file");
        }
        var files = new List<SafetensorsFile>();
        try
        {
            var fileByTensor = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var path in paths)
            {
                var file = SafetensorsFile.Open(path);
                files.Add(file);
                foreach (var tensor in file.Tensors.Keys)
                {
                    if (!fileByTensor.TryAdd(tensor, file))
                    {
                        throw new CheckpointException(
                            path, tensor, $"tensor '{tensor}' appears in both {fileByTensor[tensor].Path} and {path}");
                    }
                }
            }
            return new WeightFileSet(files, fileByTensor);
        }
        catch
        {
            files.ForEach(file => file.Dispose());
            throw;
        }
    }
}
