namespace RouteReplay.Tests.Cache;

internal enum PoolOperationKind
{
    /// <summary>A new sequence: a prefix of an earlier one (so hits happen) followed by new tokens.</summary>
    Admit,

    /// <summary>A live sequence computes more tokens, allocating blocks as it crosses block boundaries.</summary>
    Append,

    /// <summary>A live sequence finishes or is aborted and releases its blocks in reverse order.</summary>
    Release,

    /// <summary>Releasing a block that is already free must throw and change nothing.</summary>
    DoubleFree,

    /// <summary>The prefix cache is flushed.</summary>
    ResetPrefixCache,
}

/// <param name="Pick">Chooses the sequence or block the operation acts on, modulo the candidates.</param>
/// <param name="PrefixBlocks">For <see cref="PoolOperationKind.Admit"/>: how many blocks of the earlier sequence to share.</param>
/// <param name="Tokens">The new tokens, from a small alphabet.</param>
internal sealed record PoolOperation(PoolOperationKind Kind, int Pick, int PrefixBlocks, int[] Tokens)
{
    public override string ToString() => $"{Kind}({Pick}, {PrefixBlocks}, [{string.Join(',', Tokens)}])";
}

/// <param name="WeakKeys">Keys keep only the block index and a 2-bit hash, so that key collisions are common.</param>
internal sealed record PoolScenario(int NumBlocks, int BlockSize, bool PrefixCaching, bool WeakKeys, PoolOperation[] Operations)
{
    public override string ToString() =>
        $"blocks={NumBlocks} size={BlockSize} caching={PrefixCaching} weak={WeakKeys}: {string.Join("; ", Operations.AsEnumerable())}";
}
