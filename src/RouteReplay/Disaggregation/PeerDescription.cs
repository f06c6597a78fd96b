using RouteReplay.Cache;
using RouteReplay.Engine;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Disaggregation;

/// <summary>
/// What a transfer peer says about itself in the handshake: the layout of its block payloads and its model
/// fingerprint, with the text the fingerprint hashes (<see cref="ModelFingerprint.CanonicalText"/>) so that a
/// mismatch can be explained field by field. Two engines exchange blocks only when all of it is equal.
/// </summary>
public sealed record PeerDescription(UInt128 Fingerprint, PayloadLayout Layout, string ModelText)
{
    /// <summary>The engine's current description; read it on the step thread (the fingerprint changes with the weights).</summary>
    public static PeerDescription Of(LlmEngine engine)
    {
        ArgumentNullException.ThrowIfNull(engine);
        return new(engine.Fingerprint, engine.PayloadLayout, ModelFingerprint.CanonicalText(engine.ModelConfig, engine.WeightsIdentity, engine.PayloadLayout));
    }

    public byte[] Encode()
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream))
        {
            writer.Write((ulong)Fingerprint);
            writer.Write((ulong)(Fingerprint >> 64));
            writer.Write(Layout.BlockSize);
            writer.Write((int)Layout.KvDType);
            writer.Write(Layout.NumLayers);
            writer.Write(Layout.NumKvHeads);
            writer.Write(Layout.HeadDim);
            writer.Write(Layout.KvBytesPerBlock);
            writer.Write(Layout.Channels.Count);
            foreach (var channel in Layout.Channels)
            {
                writer.Write(channel.Name);
                writer.Write(channel.RowBytes);
            }
            writer.Write(ModelText);
        }
        return stream.ToArray();
    }

    /// <exception cref="InvalidDataException">The bytes are not a description.</exception>
    public static PeerDescription Decode(ReadOnlyMemory<byte> bytes)
    {
        try
        {
            using var reader = new BinaryReader(new MemoryStream(bytes.ToArray(), writable: false));
            var low = reader.ReadUInt64();
            var fingerprint = ((UInt128)reader.ReadUInt64() << 64) | low;
            var blockSize = reader.ReadInt32();
            var dtype = (TensorDType)reader.ReadInt32();
            var layers = reader.ReadInt32();
            var heads = reader.ReadInt32();
            var headDim = reader.ReadInt32();
            var kvBytes = reader.ReadInt32();
            var count = reader.ReadInt32();
            if (count is < 0 or > 1024)
            {
                throw new InvalidDataException($"a peer described {count} channels");
            }
            var channels = new ChannelLayout[count];
            for (var i = 0; i < count; i++)
            {
                channels[i] = new ChannelLayout(reader.ReadString(), reader.ReadInt32());
            }
            var text = reader.ReadString();
            return new PeerDescription(fingerprint, new PayloadLayout(blockSize, dtype, layers, heads, headDim, kvBytes, channels), text);
        }
        catch (Exception e) when (e is EndOfStreamException or ArgumentException or IOException)
        {
            throw new InvalidDataException($"the peer's handshake is malformed: {UserErrors.Message(e)}", e);
        }
    }

    /// <summary>
    /// Null when the two engines can exchange blocks; else one sentence naming what differs, layout first (block size,
    /// KV dtype, KV shape, channel table), then the model fields whose values differ.
    /// </summary>
    public static string? Difference(PeerDescription prefill, PeerDescription decode)
    {
        ArgumentNullException.ThrowIfNull(prefill);
        ArgumentNullException.ThrowIfNull(decode);
        var (p, d) = (prefill.Layout, decode.Layout);
        if (p.BlockSize != d.BlockSize)
        {
            return $"the block size differs: the prefill server's blocks hold {p.BlockSize} tokens, the decode server's {d.BlockSize} (--block-size must be equal)";
        }
        if (p.KvDType != d.KvDType)
        {
            return $"the KV cache dtype differs: {p.KvDType} on the prefill server, {d.KvDType} on the decode server";
        }
        if (p.NumLayers != d.NumLayers || p.NumKvHeads != d.NumKvHeads || p.HeadDim != d.HeadDim || p.KvBytesPerBlock != d.KvBytesPerBlock)
        {
            return $"the KV block shape differs: {Shape(p)} on the prefill server, {Shape(d)} on the decode server";
        }
        if (!p.Channels.SequenceEqual(d.Channels))
        {
            return $"the channel table differs: [{Channels(p)}] on the prefill server, [{Channels(d)}] on the decode server";
        }
        if (prefill.Fingerprint == decode.Fingerprint && prefill.ModelText == decode.ModelText)
        {
            return null;
        }
        var ours = Fields(prefill.ModelText);
        var theirs = Fields(decode.ModelText);
        var differing = ours.Keys.Union(theirs.Keys)
            .Where(name => name != "weights_identity_length" && ours.GetValueOrDefault(name) != theirs.GetValueOrDefault(name))
            .Take(3)
            .Select(name => $"{name} is '{ours.GetValueOrDefault(name) ?? "(none)"}' on the prefill server and '{theirs.GetValueOrDefault(name) ?? "(none)"}' on the decode server")
            .ToArray();
        return differing.Length > 0
            ? $"the model fingerprints differ: {string.Join("; ", differing)}"
            : $"the model fingerprints differ ({prefill.Fingerprint:x32} on the prefill server, {decode.Fingerprint:x32} on the decode server)";
    }

    private static string Shape(PayloadLayout layout) =>
        $"[{layout.NumLayers} layers, 2, {layout.BlockSize}, {layout.NumKvHeads} heads, {layout.HeadDim}] ({layout.KvBytesPerBlock} bytes)";

    private static string Channels(PayloadLayout layout) => string.Join(", ", layout.Channels.Select(c => $"{c.Name}: {c.RowBytes} bytes a row"));

    private static Dictionary<string, string> Fields(string text)
    {
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var at = line.IndexOf('=', StringComparison.Ordinal);
            if (at > 0)
            {
                fields[line[..at]] = line[(at + 1)..];
            }
        }
        return fields;
    }
}
