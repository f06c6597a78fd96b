using System.Text.Json.Nodes;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Tests.Support;

/// <summary>
/// A copy of a checkpoint whose embedding row of one token is +Inf, with the output head untied (a copy of the original
/// embedding), so that token's activations and router logits are not finite while every other token computes exactly
/// as before.
/// </summary>
public static class PoisonedCheckpoint
{
    private const string Embedding = "model.embed_tokens.weight";

    public static string Write(string source, int poisonedToken)
    {
        var target = Path.Combine(Path.GetTempPath(), $"routereplay-poisoned-{Guid.NewGuid():N}");
        Directory.CreateDirectory(target);
        foreach (var file in Directory.GetFiles(source).Where(f => !f.EndsWith(".safetensors", StringComparison.Ordinal)))
        {
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        }
        var tensors = new List<TensorToWrite>();
        using (var weights = SafetensorsFile.Open(Path.Combine(source, "model.safetensors")))
        {
            foreach (var info in weights.Tensors.Values)
            {
                var bytes = new byte[info.ElementCount * 2];
                weights.ReadAsBFloat16(info.Name, 0, bytes);
                tensors.Add(new TensorToWrite(info.Name, TensorDType.BF16, info.Shape, bytes));
                if (info.Name == Embedding)
                {
                    tensors.Add(new TensorToWrite("lm_head.weight", TensorDType.BF16, info.Shape, bytes.ToArray()));
                    var row = bytes.AsSpan((int)(poisonedToken * info.Shape[1] * 2), (int)info.Shape[1] * 2);
                    for (var i = 0; i < row.Length; i += 2)
                    {
                        row[i] = 0x80;
                        row[i + 1] = 0x7F;
                    }
                }
            }
        }
        SafetensorsWriter.Write(Path.Combine(target, "model.safetensors"), tensors);
        var configPath = Path.Combine(target, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["tie_word_embeddings"] = false;
        File.WriteAllText(configPath, config.ToJsonString());
        return target;
    }
}
