using RouteReplay.Backends;
using RouteReplay.Routing;

namespace RouteReplay.Tests.Cache;

/// <summary>Fills a real <see cref="ForwardBatch"/> as a step would, with routing rows a pure function of token and position.</summary>
internal static class StepBuilder
{
    public static ForwardBatch NewBatch(RoutingFormat format, int maxTokens = 64) =>
        new(maxTokens, maxSequences: 4, maxBlocksPerSequence: 64, format, vocabSize: 4);

    /// <summary>Expert id of element <paramref name="element"/> of the row of <paramref name="tokenId"/> at <paramref name="position"/>.</summary>
    public static int ExpertId(RoutingFormat format, int tokenId, int position, int element) =>
        ((tokenId * 31) + (position * 7) + element) % format.NumExperts;

    /// <summary>Adds a sequence's tokens <c>[start, start + count)</c> and writes their routing rows as the forward would.</summary>
    public static void AddTokens(ForwardBatch batch, ReadOnlySpan<int> blockTable, int blockSize, ReadOnlySpan<int> tokenIds, int start, int count)
    {
        var sequence = batch.AddSequence(blockTable);
        for (var p = start; p < start + count; p++)
        {
            var slot = (blockTable[p / blockSize] * blockSize) + (p % blockSize);
            batch.AddToken(sequence, tokenIds[p], p, slot, needsLogits: false);
            var row = batch.RoutingRow(batch.TokenCount - 1);
            for (var e = 0; e < batch.RoutingFormat.ElementsPerRow; e++)
            {
                batch.RoutingFormat.Set(row, e, ExpertId(batch.RoutingFormat, tokenIds[p], p, e));
            }
        }
    }

    /// <summary>The routing row <see cref="AddTokens"/> writes for a token at a position.</summary>
    public static byte[] ExpectedRoutingRow(RoutingFormat format, int tokenId, int position)
    {
        var row = new byte[format.RowBytes];
        for (var e = 0; e < format.ElementsPerRow; e++)
        {
            format.Set(row, e, ExpertId(format, tokenId, position, e));
        }
        return row;
    }
}
