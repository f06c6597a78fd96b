using System.Numerics.Tensors;

namespace RouteReplay.Engine;

/// <summary>
/// Hands out the token ids of one row of logits best first (descending logit, ties to the lower id), ordering only as
/// much of the row as is read. Ids are spread over buckets of equal logit width, best bucket first, so a bucket never
/// holds an id that ranks before one in an earlier bucket; a bucket is sorted when the reader reaches it. Reading k ids
/// costs one pass over the row plus sorting the buckets those k ids fall in. Reuses its buffers.
/// </summary>
internal sealed class LogitRanking
{
    private const int MaxBuckets = 65_536;
    private const int IdsPerBucket = 4;
    private const int SmallBucket = 16;

    private readonly ulong[] _keys;
    private readonly ushort[] _bucketOf;
    private readonly int[] _bucketEnd = new int[MaxBuckets];
    private int _next;
    private int _sortedUpTo;
    private int _bucket;

    public LogitRanking(int vocabSize)
    {
        _keys = new ulong[vocabSize];
        _bucketOf = new ushort[vocabSize];
    }

    /// <summary>Starts ranking <paramref name="logits"/>, whose largest value is <paramref name="max"/>.</summary>
    public void Start(ReadOnlySpan<float> logits, float max)
    {
        var n = logits.Length;
        var buckets = Math.Clamp(n / IdsPerBucket, 1, MaxBuckets);
        var min = TensorPrimitives.Min(logits);
        if (!float.IsFinite(min))
        {
            min = max;
            foreach (var logit in logits)
            {
                if (logit < min && float.IsFinite(logit))
                {
                    min = logit;
                }
            }
        }
        var range = (double)max - min;
        var scale = range > 0 && double.IsFinite(range) ? buckets / range : 0;
        var ends = _bucketEnd.AsSpan(0, buckets);
        ends.Clear();
        for (var id = 0; id < n; id++)
        {
            // NaN (an infinite max, or -inf times a zero scale) goes last; a comparison with NaN is false.
            var position = ((double)max - logits[id]) * scale;
            var bucket = position < buckets ? (int)position : buckets - 1;
            _bucketOf[id] = (ushort)bucket;
            ends[bucket]++;
        }
        var start = 0;
        for (var b = 0; b < buckets; b++)
        {
            (ends[b], start) = (start, start + ends[b]);
        }
        for (var id = 0; id < n; id++)
        {
            _keys[ends[_bucketOf[id]]++] = Key(logits[id], id);
        }
        _next = 0;
        _sortedUpTo = 0;
        _bucket = 0;
    }

    /// <summary>The next id in rank order; call at most once per logit after <see cref="Start"/>.</summary>
    public int Next()
    {
        if (_next == _sortedUpTo)
        {
            SortNextBucket();
        }
        return (int)(uint)_keys[_next++];
    }

    private void SortNextBucket()
    {
        while (_bucketEnd[_bucket] == _sortedUpTo)
        {
            _bucket++;
        }
        var bucket = _keys.AsSpan(_sortedUpTo, _bucketEnd[_bucket] - _sortedUpTo);
        if (bucket.Length <= SmallBucket)
        {
            InsertionSort(bucket);
        }
        else
        {
            bucket.Sort();
        }
        _sortedUpTo = _bucketEnd[_bucket];
    }

    private static void InsertionSort(Span<ulong> keys)
    {
        for (var i = 1; i < keys.Length; i++)
        {
            var key = keys[i];
            var j = i - 1;
            while (j >= 0 && keys[j] > key)
            {
                keys[j + 1] = keys[j];
                j--;
            }
            keys[j + 1] = key;
        }
    }

    /// <summary>
    /// A key whose ascending order is descending logit, then ascending id: the logit's bits mapped to an unsigned
    /// integer that orders as the float does (both zeros as one), inverted, above the id.
    /// </summary>
    private static ulong Key(float logit, int id)
    {
        var bits = BitConverter.SingleToUInt32Bits(logit == 0f ? 0f : logit);
        var ascending = (bits & 0x8000_0000u) != 0 ? ~bits : bits | 0x8000_0000u;
        return ((ulong)~ascending << 32) | (uint)id;
    }
}
