using System.Buffers;
using System.Globalization;
using System.IO.Hashing;
using System.Text;
using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Cache;

/// <summary>
/// The seed of every block key chain: a hash of everything that decides what a block's payload holds for given
/// tokens — architecture, shapes, dtype, the payload layout (KV dtype and size, every channel's name and row bytes),
/// <see cref="PayloadLayoutVersion"/> and the weights. Two
/// engines share KV (prefix cache, storage, transfer) only when their fingerprints are equal, and new weights in an
/// RL step give new keys, so stale KV or routing can never be served.
/// </summary>
public static class ModelFingerprint
{
    /// <summary>The version of the block payload layout (KV and channel rows); bump it when the layout changes.</summary>
    public const int PayloadLayoutVersion = 1;

    private const string WeightFilePattern = "*.safetensors";

    private const int WeightReadBufferBytes = 1 << 20;

    /// <summary>
    /// XxHash128 over <see cref="CanonicalText"/>: one <c>name=value</c> line per field, invariant culture, the
    /// weights identity last and length-prefixed.
    /// </summary>
    /// <param name="config">The model's architecture.</param>
    /// <param name="weightsIdentity">
    /// <see cref="HashWeights"/> of the model folder, or a weights version string the user guarantees is unique.
    /// </param>
    /// <param name="layout">The layout of the engine's block payloads, so engines whose payloads differ never share keys.</param>
    public static UInt128 Compute(ModelConfig config, string weightsIdentity, PayloadLayout layout) =>
        XxHash128.HashToUInt128(Encoding.UTF8.GetBytes(CanonicalText(config, weightsIdentity, layout)));

    /// <summary>The text <see cref="Compute"/> hashes; exposed so a fingerprint mismatch can be explained.</summary>
    public static string CanonicalText(ModelConfig config, string weightsIdentity, PayloadLayout layout)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weightsIdentity);
        ArgumentNullException.ThrowIfNull(layout);
        var text = new StringBuilder();
        Line(text, "payload_layout_version", PayloadLayoutVersion);
        text.Append(ArchitectureText(config));
        Line(text, "block_size", layout.BlockSize);
        Line(text, "kv_dtype", layout.KvDType.ToString());
        Line(text, "kv_shape", string.Join(',', layout.NumLayers, 2, layout.BlockSize, layout.NumKvHeads, layout.HeadDim));
        Line(text, "kv_bytes_per_block", layout.KvBytesPerBlock);
        Line(text, "channel_count", layout.Channels.Count);
        foreach (var channel in layout.Channels)
        {
            Line(text, "channel", $"{channel.Name.Length.ToString(CultureInfo.InvariantCulture)}:{channel.Name},row_bytes={channel.RowBytes.ToString(CultureInfo.InvariantCulture)}");
        }
        Line(text, "weights_identity_length", weightsIdentity.Length);
        Line(text, "weights_identity", weightsIdentity);
        return text.ToString();
    }

    /// <summary>The architecture's lines of <see cref="CanonicalText"/>, one <c>name=value</c> per config field, to compare configs.</summary>
    public static string ArchitectureText(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var text = new StringBuilder();
        Line(text, "architecture", config.Architecture);
        Line(text, "hidden_size", config.HiddenSize);
        Line(text, "num_hidden_layers", config.NumHiddenLayers);
        Line(text, "num_attention_heads", config.NumAttentionHeads);
        Line(text, "num_key_value_heads", config.NumKeyValueHeads);
        Line(text, "head_dim", config.HeadDim);
        Line(text, "intermediate_size", config.IntermediateSize);
        Line(text, "moe_intermediate_size", config.MoeIntermediateSize);
        Line(text, "num_experts", config.NumExperts);
        Line(text, "num_experts_per_tok", config.NumExpertsPerTok);
        Line(text, "norm_topk_prob", config.NormTopkProb);
        Line(text, "decoder_sparse_step", config.DecoderSparseStep);
        Line(text, "mlp_only_layers", string.Join(',', config.MlpOnlyLayers));
        Line(text, "moe_layers", string.Join(',', config.MoeLayers));
        Line(text, "rms_norm_eps", config.RmsNormEps);
        Line(text, "rope_theta", config.RopeTheta);
        Line(text, "rope_scaling", RopeScalingText(config.RopeScaling));
        Line(text, "vocab_size", config.VocabSize);
        Line(text, "tie_word_embeddings", config.TieWordEmbeddings);
        Line(text, "max_position_embeddings", config.MaxPositionEmbeddings);
        Line(text, "dtype", config.DType);
        Line(text, "attention_bias", config.AttentionBias);
        Line(text, "routing_dtype", RoutingDTypeName(config.NumExperts));
        AppendFamilyLines(text, config);
        return text.ToString();
    }

    /// <summary>
    /// The fields other families add, each only when it differs from Qwen3-MoE's value, so a Qwen3-MoE model's text
    /// (and every key already stored for one) is unchanged.
    /// </summary>
    private static void AppendFamilyLines(StringBuilder text, ModelConfig config)
    {
        var qwen3 = new ModelConfig
        {
            Architecture = config.Architecture,
            HiddenSize = 0,
            NumHiddenLayers = 0,
            NumAttentionHeads = 0,
            NumKeyValueHeads = 0,
            HeadDim = 0,
            IntermediateSize = 0,
            MoeIntermediateSize = 0,
            NumExperts = 0,
            NumExpertsPerTok = 0,
            RopeTheta = 0,
            VocabSize = 0,
            MaxPositionEmbeddings = 0,
            DType = "",
        };
        void LineIfChanged<T>(string name, T value, T qwen3Value)
        {
            if (!EqualityComparer<T>.Default.Equals(value, qwen3Value))
            {
                Line(text, name, Convert.ToString(value, CultureInfo.InvariantCulture) ?? "null");
            }
        }
        LineIfChanged("model_type", config.ModelType, qwen3.ModelType);
        LineIfChanged("router", RouterText(config.Router), RouterText(qwen3.Router));
        LineIfChanged("shared_expert_intermediate_size", config.SharedExpertIntermediateSize, qwen3.SharedExpertIntermediateSize);
        LineIfChanged("shared_expert_gate", config.SharedExpertGate, qwen3.SharedExpertGate);
        LineIfChanged("first_k_dense_replace", config.FirstKDenseReplace, qwen3.FirstKDenseReplace);
        LineIfChanged("qk_norm", config.QkNorm.ToString(), qwen3.QkNorm.ToString());
        LineIfChanged("clip_qkv", config.ClipQkv, qwen3.ClipQkv);
        LineIfChanged("output_projection_bias", config.OutputProjectionBias, config.AttentionBias);
        LineIfChanged("sliding_window", config.SlidingWindow, qwen3.SlidingWindow);
        LineIfChanged("sliding_layers", string.Join(',', config.SlidingLayers), string.Join(',', qwen3.SlidingLayers));
        LineIfChanged("attention_sinks", config.AttentionSinks, qwen3.AttentionSinks);
        LineIfChanged("swiglu_limit", config.SwigluLimit, qwen3.SwigluLimit);
        if (config.SwigluLimit is not null)
        {
            Line(text, "swiglu_alpha", config.SwigluAlpha);
        }
        LineIfChanged("expert_biases", config.ExpertBiases, qwen3.ExpertBiases);
        if (config.Mla is { } mla)
        {
            Line(text, "kv_layout", "latent");
            Line(
                text,
                "mla",
                string.Join(',', mla.QLoraRank, mla.KvLoraRank, mla.QkNopeHeadDim, mla.QkRopeHeadDim, mla.VHeadDim, mla.RopeInterleave, Number(mla.SoftmaxScaleFactor)));
        }
    }

    /// <summary>
    /// A weights identity for <see cref="Compute"/>: 32 lowercase hex digits of XxHash128 over every
    /// <c>*.safetensors</c> file directly in <paramref name="modelDir"/>, in ordinal name order, each contributing its
    /// name, its length and its bytes. Streams the files through one reused buffer, so any size is fine.
    /// </summary>
    /// <exception cref="CheckpointException">The folder holds no safetensors file, or one cannot be read (a FIFO in a file's place among others).</exception>
    public static string HashWeights(string modelDir)
    {
        ArgumentNullException.ThrowIfNull(modelDir);
        var files = Directory.GetFiles(modelDir, WeightFilePattern, SearchOption.TopDirectoryOnly);
        if (files.Length == 0)
        {
            throw new CheckpointException(modelDir, null, $"no {WeightFilePattern} file in {modelDir} to hash");
        }
        Array.Sort(files, StringComparer.Ordinal);
        var hasher = new XxHash128();
        var buffer = ArrayPool<byte>.Shared.Rent(WeightReadBufferBytes);
        try
        {
            foreach (var file in files)
            {
                AppendFile(hasher, file, buffer);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return Convert.ToHexStringLower(hasher.GetCurrentHash());
    }

    private static void AppendFile(XxHash128 hasher, string path, byte[] buffer)
    {
        using var stream = OpenWeightFile(path);
        hasher.Append(Encoding.UTF8.GetBytes($"{Path.GetFileName(path)}\n{stream.Length}\n"));
        int read;
        while ((read = stream.Read(buffer)) > 0)
        {
            hasher.Append(buffer.AsSpan(0, read));
        }
    }

    private static FileStream OpenWeightFile(string path)
    {
        try
        {
            return RegularFiles.OpenRead(path, FileOptions.SequentialScan);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, null, $"{path}: cannot read the weight file to hash it: {e.Message}", e);
        }
    }

    private static string RoutingDTypeName(int numExperts) => numExperts switch
    {
        0 => "none",
        <= byte.MaxValue => "uint8",
        _ => "uint16",
    };

    private static string RopeScalingText(RopeScaling? scaling) => scaling is null
        ? "none"
        : string.Join(
            ',',
            scaling.Type,
            Number(scaling.Factor),
            scaling.OriginalMaxPositionEmbeddings?.ToString(CultureInfo.InvariantCulture) ?? "none",
            scaling.AttentionFactor is { } attention ? Number(attention) : "none",
            scaling.BetaFast is { } fast ? Number(fast) : "none",
            scaling.BetaSlow is { } slow ? Number(slow) : "none")
        + (scaling.Truncate ? "" : ",truncate=false")
        + (scaling.Mscale is null && scaling.MscaleAllDim is null
            ? ""
            : $",mscale={(scaling.Mscale is { } m ? Number(m) : "none")},mscale_all_dim={(scaling.MscaleAllDim is { } a ? Number(a) : "none")}");

    private static void Line(StringBuilder text, string name, string value) => text.Append(name).Append('=').Append(value).Append('\n');

    private static void Line(StringBuilder text, string name, int value) => Line(text, name, value.ToString(CultureInfo.InvariantCulture));

    private static void Line(StringBuilder text, string name, double value) => Line(text, name, Number(value));

    private static void Line(StringBuilder text, string name, bool value) => Line(text, name, value ? "true" : "false");

    private static string RouterText(RouterSpec router) =>
        string.Join(',', router.Scoring, router.LogitBias, router.CorrectionBias, router.ExpertGroups, router.TopKGroups, Number(router.ScalingFactor));

    private static string Number(double value) => value.ToString("R", CultureInfo.InvariantCulture);
}
