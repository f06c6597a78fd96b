using System.Buffers;
using RouteReplay.Engine;

namespace RouteReplay.Disaggregation;

/// <summary>
/// The body of a <see cref="TransferFrame.Request"/>: what a prefill server computes for a decode server. Sampling
/// carries only what the first token needs (temperature, top-p, top-k, seed); stop conditions and the token budget
/// stay with the decode server, which decides whether the first token ends a choice.
/// </summary>
internal sealed record PrefillRequest(
    string RequestId,
    int[] PromptTokenIds,
    float Temperature,
    float TopP,
    int TopK,
    ulong? Seed,
    int N,
    int? Logprobs,
    UInt128[] HeldRowDigests,
    int HeartbeatMilliseconds)
{
    private const int MaxPromptTokens = 1 << 24;

    public static PrefillRequest For(BlockImport import, TimeSpan heartbeat) => new(
        import.RequestId,
        [.. import.PromptTokenIds],
        import.Sampling.Temperature,
        import.Sampling.TopP,
        import.Sampling.TopK,
        import.Sampling.Seed,
        import.N,
        import.Logprobs,
        [.. import.HeldRowDigests],
        (int)Math.Clamp(heartbeat.TotalMilliseconds, 1, int.MaxValue));

    /// <summary>The prefill engine's request: the prompt, its first token per choice, and an export for the held blocks.</summary>
    public EngineRequest ToEngineRequest(BlockExport export) => new()
    {
        RequestId = $"pd:{RequestId}:{Guid.NewGuid().ToString("N")[..8]}",
        PromptTokenIds = PromptTokenIds,
        Sampling = new SamplingParams { Temperature = Temperature, TopP = TopP, TopK = TopK, Seed = Seed, MaxTokens = 1 },
        N = N,
        Logprobs = Logprobs,
        ReturnRouting = false,
        PrefillExport = export,
    };

    public byte[] Encode()
    {
        var writer = new BodyWriter()
            .Text(RequestId.Length > 1024 ? RequestId[..1024] : RequestId)
            .Single(Temperature)
            .Single(TopP)
            .Int32(TopK)
            .Byte(Seed.HasValue ? (byte)1 : (byte)0)
            .UInt64(Seed ?? 0)
            .Int32(N)
            .Int32(Logprobs ?? -1)
            .Int32(HeartbeatMilliseconds)
            .Int32(PromptTokenIds.Length);
        foreach (var token in PromptTokenIds)
        {
            writer.Int32(token);
        }
        writer.Int32(HeldRowDigests.Length);
        foreach (var digest in HeldRowDigests)
        {
            writer.UInt128(digest);
        }
        return writer.WrittenSpan.ToArray();
    }

    /// <exception cref="InvalidDataException">The body is truncated or holds impossible counts.</exception>
    public static PrefillRequest Decode(ReadOnlySequence<byte> body)
    {
        var reader = new BodyReader(body, "request");
        var id = reader.Text();
        var temperature = reader.Single();
        var topP = reader.Single();
        var topK = reader.Int32();
        var hasSeed = reader.Byte() != 0;
        var seed = reader.UInt64();
        var n = reader.Int32();
        var logprobs = reader.Int32();
        var heartbeat = reader.Int32();
        var count = reader.Int32();
        if (count is < 1 or > MaxPromptTokens || reader.Remaining < (long)count * sizeof(int))
        {
            throw new InvalidDataException($"the request frame announces {count} prompt tokens");
        }
        var prompt = new int[count];
        for (var i = 0; i < count; i++)
        {
            prompt[i] = reader.Int32();
        }
        var held = reader.Int32();
        if (held < 0 || held > count || reader.Remaining != (long)held * 16)
        {
            throw new InvalidDataException($"the request frame announces {held} held blocks");
        }
        var digests = new UInt128[held];
        for (var i = 0; i < held; i++)
        {
            digests[i] = reader.UInt128();
        }
        return new PrefillRequest(id, prompt, temperature, topP, topK, hasSeed ? seed : null, n, logprobs < 0 ? null : logprobs, digests, Math.Max(1, heartbeat));
    }
}
