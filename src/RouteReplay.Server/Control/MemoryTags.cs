using RouteReplay.Engine;
using RouteReplay.Server.Http;

namespace RouteReplay.Server.Control;

/// <summary>
/// The memory tags of SGLang's and vLLM's sleep endpoints: <c>weights</c> and <c>kv_cache</c>; SGLang's
/// <c>cuda_graph</c> is accepted and names nothing (this server holds no CUDA graphs).
/// </summary>
public static class MemoryTags
{
    public const string Weights = "weights";
    public const string KvCache = "kv_cache";
    public const string CudaGraph = "cuda_graph";

    /// <summary>The regions <paramref name="tags"/> name; null (no tags given) names all.</summary>
    /// <exception cref="ApiException">400 naming <paramref name="field"/> for a tag that is not one of the three.</exception>
    public static MemoryRegions Parse(IEnumerable<string>? tags, string field)
    {
        if (tags is null)
        {
            return MemoryRegions.All;
        }
        var regions = MemoryRegions.None;
        foreach (var tag in tags)
        {
            regions |= tag switch
            {
                Weights => MemoryRegions.Weights,
                KvCache => MemoryRegions.KvCache,
                CudaGraph => MemoryRegions.None,
                _ => throw ApiException.BadRequest($"'{field}' has the unknown tag '{tag}': use '{Weights}', '{KvCache}' or '{CudaGraph}'", field),
            };
        }
        return regions;
    }

    /// <summary>The regions a JSON body's <c>tags</c> names: absent or null for all, else a tag or an array of tags.</summary>
    public static MemoryRegions FromBody(RequestFields fields) => Parse(fields.StringOrStrings("tags", 16), "tags");

    /// <summary>The tags naming <paramref name="regions"/>, in the order SGLang lists them.</summary>
    public static IReadOnlyList<string> Names(MemoryRegions regions)
    {
        List<string> names = [];
        if (regions.HasFlag(MemoryRegions.Weights))
        {
            names.Add(Weights);
        }
        if (regions.HasFlag(MemoryRegions.KvCache))
        {
            names.Add(KvCache);
        }
        return names;
    }
}
