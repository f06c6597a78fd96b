using RouteReplay.Cache;
using RouteReplay.Routing;

using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Cache;

/// <summary>
/// Drives a <see cref="BlockPool"/> the way the engine will (prefix lookup, allocate, compute and capture rows, commit
/// full blocks, release in reverse order) next to a <see cref="BlockPoolModel"/>, and after every operation checks
/// that both agree, that ref counts equal the live block tables, and that every live sequence's rows in every channel
/// are exactly its own tokens' rows.
/// </summary>
internal sealed class PoolScenarioRunner
{
    private static readonly RoutingFormat Format = new([0, 2], 2, 300);
    private static readonly BlockKey Root = BlockKey.Root(0xF1F1);

    private readonly PoolScenario _scenario;
    private readonly int _blockSize;
    private readonly BlockPool _pool;
    private readonly BlockPoolModel _model;
    private readonly RoutingChannel _routing;
    private readonly TokenPositionChannel _tokens;
    private readonly List<Sequence> _live = [];
    private readonly List<int[]> _history = [];

    public PoolScenarioRunner(PoolScenario scenario)
    {
        _scenario = scenario;
        _blockSize = scenario.BlockSize;
        _routing = new RoutingChannel(Format, scenario.NumBlocks, _blockSize);
        _tokens = new TokenPositionChannel(scenario.NumBlocks, _blockSize);
        _pool = new BlockPool(scenario.NumBlocks, _blockSize, scenario.PrefixCaching, [_routing, _tokens]);
        _model = new BlockPoolModel(scenario.NumBlocks, scenario.PrefixCaching);
    }

    /// <summary>How often the scenario reached each interesting path, so the property test can prove it exercised them.</summary>
    public PoolCoverage Coverage { get; } = new();

    public void Run()
    {
        foreach (var operation in _scenario.Operations)
        {
            Apply(operation);
            CheckInvariants();
        }
        while (_live.Count > 0)
        {
            Release(_live[^1]);
            CheckInvariants();
        }
        Assert.Equal(_pool.NumBlocks, _pool.FreeBlockCount);
        Assert.Equal(0, _pool.UsedBlockCount);
        Coverage.Hits = _pool.HitBlocks;
        Coverage.Evictions = _pool.Evictions;
        Coverage.Collisions = _pool.HashCollisions;
    }

    private void Apply(PoolOperation operation)
    {
        switch (operation.Kind)
        {
            case PoolOperationKind.Admit:
                Admit(operation);
                break;
            case PoolOperationKind.Append when _live.Count > 0:
                Append(_live[operation.Pick % _live.Count], operation.Tokens);
                break;
            case PoolOperationKind.Release when _live.Count > 0:
                Release(_live[operation.Pick % _live.Count]);
                break;
            case PoolOperationKind.DoubleFree:
                DoubleFree(operation.Pick);
                break;
            case PoolOperationKind.ResetPrefixCache:
                _pool.ResetPrefixCache();
                _model.ResetPrefixCache();
                break;
        }
    }

    private void Admit(PoolOperation operation)
    {
        var prefix = _history.Count == 0 ? [] : _history[operation.Pick % _history.Count];
        var shared = Math.Min(operation.PrefixBlocks * _blockSize, prefix.Length);
        int[] prompt = [.. prefix.AsSpan(0, shared), .. operation.Tokens];
        if (prompt.Length == 0)
        {
            return;
        }
        var sequence = new Sequence();
        sequence.Tokens.AddRange(prompt);
        LookUpPrefix(sequence, hitLimit: (prompt.Length - 1) / _blockSize);
        var needed = BlocksFor(prompt.Length) - sequence.Blocks.Count;
        if (!_pool.CanAllocate(needed))
        {
            Assert.True(needed > _model.FreeCount);
            ReleaseBlocks(sequence);
            Coverage.Aborts++;
            return;
        }
        for (var i = 0; i < needed; i++)
        {
            sequence.Blocks.Add(AllocateBoth());
        }
        Compute(sequence, sequence.Keys.Count * _blockSize);
        _live.Add(sequence);
        _history.Add([.. sequence.Tokens]);
    }

    /// <summary>Takes prefix hits block by block, at most <paramref name="hitLimit"/>, stopping at the first miss.</summary>
    private void LookUpPrefix(Sequence sequence, int hitLimit)
    {
        var parent = Root;
        for (var i = 0; i < hitLimit; i++)
        {
            var tokens = sequence.Tokens.GetRange(i * _blockSize, _blockSize).ToArray();
            var key = KeyFor(parent, tokens, i);
            var expected = _model.TryHit(key, parent, tokens);
            var hit = _pool.TryHit(key, parent, tokens, out var block);
            Assert.Equal(expected.HasValue, hit);
            if (!hit)
            {
                return;
            }
            Assert.Equal(expected, block);
            if (_pool.RefCount(block) == 1)
            {
                Coverage.HitsOnFreeBlocks++;
            }
            sequence.Blocks.Add(block);
            sequence.Keys.Add(key);
            CheckRows(sequence, i * _blockSize, _blockSize);
            parent = key;
        }
    }

    private void Append(Sequence sequence, int[] tokens)
    {
        var start = sequence.Tokens.Count;
        foreach (var token in tokens)
        {
            if (sequence.Tokens.Count % _blockSize == 0)
            {
                if (!_pool.CanAllocate(1))
                {
                    Assert.Equal(0, _model.FreeCount);
                    break;
                }
                sequence.Blocks.Add(AllocateBoth());
            }
            sequence.Tokens.Add(token);
        }
        Compute(sequence, start);
        _history.Add([.. sequence.Tokens]);
    }

    /// <summary>Runs a step over the sequence's tokens from <paramref name="start"/>, captures its rows and commits the blocks it filled.</summary>
    private void Compute(Sequence sequence, int start)
    {
        var count = sequence.Tokens.Count - start;
        if (count == 0)
        {
            return;
        }
        for (var b = start / _blockSize; b < sequence.Blocks.Count; b++)
        {
            Assert.Equal(1, _pool.RefCount(sequence.Blocks[b]));
        }
        var batch = StepBuilder.NewBatch(Format, maxTokens: count);
        StepBuilder.AddTokens(batch, sequence.Blocks.ToArray(), _blockSize, sequence.Tokens.ToArray(), start, count);
        foreach (var channel in _pool.Channels)
        {
            channel.CaptureStep(batch);
        }
        for (var b = sequence.Keys.Count; b < sequence.Tokens.Count / _blockSize; b++)
        {
            var parent = b == 0 ? Root : sequence.Keys[b - 1];
            var tokens = sequence.Tokens.GetRange(b * _blockSize, _blockSize).ToArray();
            var key = KeyFor(parent, tokens, b);
            _model.Commit(sequence.Blocks[b], key, parent, tokens);
            _pool.Commit(sequence.Blocks[b], key, parent, tokens);
            sequence.Keys.Add(key);
        }
    }

    private void Release(Sequence sequence)
    {
        ReleaseBlocks(sequence);
        _live.Remove(sequence);
    }

    private void ReleaseBlocks(Sequence sequence)
    {
        _pool.ReleaseSequence(sequence.Blocks.ToArray());
        for (var i = sequence.Blocks.Count - 1; i >= 0; i--)
        {
            _model.Release(sequence.Blocks[i]);
        }
    }

    private void DoubleFree(int pick)
    {
        var free = Enumerable.Range(0, _pool.NumBlocks).Where(block => _model.RefCount(block) == 0).ToArray();
        if (free.Length > 0)
        {
            Assert.Throws<InvalidOperationException>(() => _pool.Release(free[pick % free.Length]));
            Coverage.DoubleFrees++;
        }
    }

    private int AllocateBoth()
    {
        var expected = _model.Allocate();
        var block = _pool.Allocate();
        Assert.Equal(expected, block);
        Assert.True(_routing.BlockRows(block).IndexOfAnyExcept(BlockChannel.UnsetByte) < 0);
        Assert.True(_tokens.BlockRows(block).IndexOfAnyExcept(BlockChannel.UnsetByte) < 0);
        return block;
    }

    private void CheckInvariants()
    {
        Assert.Equal(_pool.NumBlocks, _pool.FreeBlockCount + _pool.UsedBlockCount);
        Assert.Equal(_model.FreeCount, _pool.FreeBlockCount);
        Assert.Equal(_model.CachedCount, _pool.CachedBlockCount);
        Assert.Equal(_model.HitBlocks, _pool.HitBlocks);
        Assert.Equal(_model.Evictions, _pool.Evictions);
        Assert.Equal(_model.HashCollisions, _pool.HashCollisions);
        if (!_scenario.WeakKeys)
        {
            Assert.Equal(0, _pool.HashCollisions);
        }
        var holders = new int[_pool.NumBlocks];
        foreach (var sequence in _live)
        {
            foreach (var block in sequence.Blocks)
            {
                holders[block]++;
            }
            CheckRows(sequence, 0, sequence.Tokens.Count);
        }
        for (var block = 0; block < _pool.NumBlocks; block++)
        {
            Assert.Equal(holders[block], _pool.RefCount(block));
            Assert.Equal(_model.RefCount(block), _pool.RefCount(block));
            Assert.Equal(_model.KeyOf(block), _pool.KeyOf(block));
            Assert.Equal(_model.KeyOf(block).HasValue, _pool.IsCached(block));
        }
    }

    /// <summary>Every channel's rows at positions <c>[start, start + count)</c> are this sequence's tokens' own rows.</summary>
    private void CheckRows(Sequence sequence, int start, int count)
    {
        var blockTable = sequence.Blocks.ToArray();
        var tokenRows = new byte[count * _tokens.RowBytes];
        var routingRows = new byte[count * _routing.RowBytes];
        _tokens.Gather(blockTable, start, count, tokenRows);
        _routing.Gather(blockTable, start, count, routingRows);
        Assert.False(_routing.ContainsUnset(routingRows));
        Assert.False(_tokens.ContainsUnset(tokenRows));
        for (var i = 0; i < count; i++)
        {
            var p = start + i;
            Assert.Equal((sequence.Tokens[p], p), TokenPositionChannel.Read(tokenRows.AsSpan(i * _tokens.RowBytes)));
            Assert.Equal(
                StepBuilder.ExpectedRoutingRow(Format, sequence.Tokens[p], p),
                routingRows.AsSpan(i * _routing.RowBytes, _routing.RowBytes).ToArray());
        }
    }

    /// <summary>The chained key; weak keys keep the block index (so equal parents mean equal depth) and 2 bits of hash.</summary>
    private BlockKey KeyFor(BlockKey parent, int[] tokens, int blockIndex)
    {
        var key = BlockKey.Chain(parent, tokens);
        return _scenario.WeakKeys ? new BlockKey(((UInt128)(ulong)blockIndex << 64) | (key.Value % 4)) : key;
    }

    private int BlocksFor(int tokenCount) => (tokenCount + _blockSize - 1) / _blockSize;

    private sealed class Sequence
    {
        public List<int> Tokens { get; } = [];

        /// <summary>The block table, in position order.</summary>
        public List<int> Blocks { get; } = [];

        /// <summary>Keys of the sequence's full blocks, in order.</summary>
        public List<BlockKey> Keys { get; } = [];
    }
}
