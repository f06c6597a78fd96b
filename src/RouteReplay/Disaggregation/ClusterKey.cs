using System.Security.Cryptography;
using System.Text;

namespace RouteReplay.Disaggregation;

/// <summary>
/// The secret a router and its prefill and decode servers share (<c>--cluster-key</c>). It never travels: the router
/// signs the prefill addresses it names to a decode server (<see cref="SignPrefillList"/>), and a decode server signs
/// each transfer request it sends a prefill server (<see cref="TransferTag"/>), both HMAC-SHA256, checked in constant
/// time. A signature covers exactly what it vouches for, so one replayed names only the addresses or asks only the
/// prompt its signer chose.
/// </summary>
public sealed class ClusterKey
{
    /// <summary>Shortest key accepted, in characters.</summary>
    public const int MinLength = 16;

    /// <summary>Bytes of a transfer tag.</summary>
    public const int TagBytes = 32;

    private static readonly byte[] PrefillListContext = "routereplay-prefill-list\0"u8.ToArray();
    private static readonly byte[] TransferContext = "routereplay-transfer\0"u8.ToArray();
    private static readonly byte[] IdContext = "routereplay-key-id\0"u8.ToArray();

    private readonly byte[] _key;

    /// <exception cref="ArgumentException">The key is shorter than <see cref="MinLength"/> (parameter <c>cluster-key</c>).</exception>
    public ClusterKey(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (key.Length < MinLength)
        {
            throw new ArgumentException($"--cluster-key must be at least {MinLength} characters (e.g. the output of 'openssl rand -hex 32'), got {key.Length}", "cluster-key");
        }
        _key = Encoding.UTF8.GetBytes(key);
    }

    /// <summary>
    /// A short public name of the key (a hash of it that reveals nothing of it), so that servers and routers can tell
    /// whether they hold the same key without sending it.
    /// </summary>
    public string Id => Convert.ToHexStringLower(Mac([IdContext]).AsSpan(0, 8));

    /// <summary>The signature of a prefill address list (the header value, as sent), in lowercase hex.</summary>
    public string SignPrefillList(string addresses) => Convert.ToHexStringLower(Mac([PrefillListContext, Encoding.UTF8.GetBytes(addresses)]));

    /// <summary>True when <paramref name="signature"/> is this key's signature of <paramref name="addresses"/>.</summary>
    public bool IsSignedPrefillList(string addresses, string? signature)
    {
        if (signature is null || signature.Length != TagBytes * 2)
        {
            return false;
        }
        byte[] given;
        try
        {
            given = Convert.FromHexString(signature);
        }
        catch (FormatException)
        {
            return false;
        }
        return CryptographicOperations.FixedTimeEquals(given, Mac([PrefillListContext, Encoding.UTF8.GetBytes(addresses)]));
    }

    /// <summary>The tag of a transfer: the decode server's description and its request, as sent.</summary>
    public byte[] TransferTag(ReadOnlySpan<byte> description, ReadOnlySpan<byte> request)
    {
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, _key);
        hmac.AppendData(TransferContext);
        hmac.AppendData(description);
        hmac.AppendData(request);
        return hmac.GetHashAndReset();
    }

    /// <summary>True when <paramref name="tag"/> is this key's tag of the description and request.</summary>
    public bool IsTransferTag(ReadOnlySpan<byte> tag, ReadOnlySpan<byte> description, ReadOnlySpan<byte> request) =>
        tag.Length == TagBytes && CryptographicOperations.FixedTimeEquals(tag, TransferTag(description, request));

    private byte[] Mac(byte[][] parts)
    {
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, _key);
        foreach (var part in parts)
        {
            hmac.AppendData(part);
        }
        return hmac.GetHashAndReset();
    }
}
