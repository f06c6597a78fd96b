namespace RouteReplay.Cache;

/// <summary>What <see cref="PayloadCodec"/> found in an encoded value; anything but <see cref="Ok"/> means the value must not be used.</summary>
public enum PayloadCodecStatus
{
    Ok,

    /// <summary>Shorter than its header says (or than any header).</summary>
    Truncated,

    /// <summary>Longer than its header says: trailing bytes.</summary>
    LengthMismatch,

    /// <summary>Not a RouteReplay block value.</summary>
    BadMagic,

    /// <summary>A header format this build does not read.</summary>
    UnsupportedFormatVersion,

    /// <summary>The checksum over header and payload does not match: the bytes were altered.</summary>
    ChecksumMismatch,

    /// <summary>Checksummed, but its fields are inconsistent (unknown flags, token count out of range, channel table past the header).</summary>
    MalformedHeader,

    /// <summary>Written with another payload layout version.</summary>
    LayoutVersionMismatch,

    BlockSizeMismatch,

    /// <summary>Another KV dtype, layer count, head count, head size or KV byte count.</summary>
    KvLayoutMismatch,

    /// <summary>Other channels, in another order, or with other row sizes.</summary>
    ChannelTableMismatch,

    /// <summary>Computed by a model with another fingerprint (architecture, weights, layout).</summary>
    FingerprintMismatch,

    /// <summary>A partial or uncommitted block where a keyed one was expected.</summary>
    NotKeyed,

    KeyMismatch,

    ParentMismatch,

    /// <summary>Other token ids (or another count) than the block that was asked for.</summary>
    TokenMismatch,
}
