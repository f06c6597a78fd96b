using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace RouteReplay.Server.Router;

/// <summary>
/// A prompt as the router sees it, for cache-aware choice: one hash per full leading block, each hash covering the whole
/// prompt up to the end of its block (so two prompts share their first <c>k</c> hashes exactly when they share their
/// first <c>k</c> blocks, up to hash collisions). A block is <see cref="BlockTokens"/> token ids when the request gives
/// token ids, else <see cref="BlockChars"/> characters of its text (about as many tokens); a chat's text is its
/// messages' roles and contents in order, so each turn of a conversation extends the previous turn's.
/// </summary>
internal sealed class PromptKey
{
    /// <summary>The token ids of a block: the serve's default <c>--block-size</c>.</summary>
    public const int BlockTokens = 16;

    /// <summary>The characters of a block of text, about <see cref="BlockTokens"/> tokens.</summary>
    public const int BlockChars = 4 * BlockTokens;

    private const long TokenSeed = 0x746f6b656e73;
    private const long TextSeed = 0x74657874;

    private PromptKey(ulong[] blocks) => Blocks = blocks;

    /// <summary>The chained hash of each full leading block.</summary>
    public ulong[] Blocks { get; }

    public static PromptKey Of(ReadOnlySpan<int> tokenIds) => Chain(MemoryMarshal.AsBytes(tokenIds), BlockTokens * sizeof(int), TokenSeed);

    public static PromptKey Of(string text) => Chain(MemoryMarshal.AsBytes(text.AsSpan()), BlockChars * sizeof(char), TextSeed);

    /// <summary>
    /// The prompt of a generation request's body: <c>input_ids</c> or <c>text</c> (<c>/generate</c>), <c>prompt</c>
    /// (<c>/v1/completions</c>: token ids or text), <c>messages</c> (<c>/v1/chat/completions</c>). Null when the body has
    /// none that can be read (the worker answers what is wrong with it).
    /// </summary>
    public static PromptKey? Read(string path, ReadOnlySpan<byte> body)
    {
        try
        {
            using var document = JsonDocument.Parse(body.ToArray());
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return null;
            }
            return path switch
            {
                "/generate" => root.TryGetProperty("input_ids", out var ids) ? OfIds(ids) : root.TryGetProperty("text", out var text) ? OfText(text) : null,
                "/v1/completions" => root.TryGetProperty("prompt", out var prompt) ? prompt.ValueKind == JsonValueKind.Array ? OfIds(prompt) : OfText(prompt) : null,
                "/v1/chat/completions" => root.TryGetProperty("messages", out var messages) ? OfMessages(messages) : null,
                _ => null,
            };
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static PromptKey? OfIds(JsonElement ids)
    {
        if (ids.ValueKind != JsonValueKind.Array)
        {
            return null;
        }
        var tokens = new int[ids.GetArrayLength()];
        var i = 0;
        foreach (var id in ids.EnumerateArray())
        {
            if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out tokens[i++]))
            {
                return null;
            }
        }
        return Of(tokens);
    }

    private static PromptKey? OfText(JsonElement text) => text.ValueKind == JsonValueKind.String ? Of(text.GetString()!) : null;

    private static PromptKey? OfMessages(JsonElement messages)
    {
        if (messages.ValueKind != JsonValueKind.Array)
        {
            return null;
        }
        var text = new StringBuilder();
        foreach (var message in messages.EnumerateArray())
        {
            if (message.ValueKind != JsonValueKind.Object)
            {
                return null;
            }
            text.Append(message.TryGetProperty("role", out var role) ? role.ToString() : "").Append('\u001f');
            if (message.TryGetProperty("content", out var content))
            {
                text.Append(content.ValueKind == JsonValueKind.String ? content.GetString() : content.GetRawText());
            }
            text.Append('\u001e');
        }
        return Of(text.ToString());
    }

    private static PromptKey Chain(ReadOnlySpan<byte> prompt, int blockBytes, long seed)
    {
        var blocks = new ulong[prompt.Length / blockBytes];
        var hash = (ulong)seed;
        for (var b = 0; b < blocks.Length; b++)
        {
            hash = XxHash3.HashToUInt64(prompt.Slice(b * blockBytes, blockBytes), (long)hash);
            blocks[b] = hash;
        }
        return new PromptKey(blocks);
    }
}
