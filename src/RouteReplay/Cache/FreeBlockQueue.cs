namespace RouteReplay.Cache;

/// <summary>
/// The free blocks in reuse order, as a doubly-linked list threaded through two int arrays: O(1) push at either end,
/// pop at the head and unlink from anywhere, with no allocation after construction. The head is the next block to be
/// reused. Membership is the caller's to track (a block is queued exactly when its ref
/// count is 0); the queue does not check it.
/// </summary>
internal sealed class FreeBlockQueue
{
    private const int None = -1;

    private readonly int[] _previous;
    private readonly int[] _next;
    private int _head;
    private int _tail;

    /// <summary>Creates a queue holding every block, in id order.</summary>
    public FreeBlockQueue(int numBlocks)
    {
        _previous = new int[numBlocks];
        _next = new int[numBlocks];
        for (var block = 0; block < numBlocks; block++)
        {
            _previous[block] = block - 1;
            _next[block] = block + 1 < numBlocks ? block + 1 : None;
        }
        _head = numBlocks > 0 ? 0 : None;
        _tail = numBlocks - 1;
        Count = numBlocks;
    }

    public int Count { get; private set; }

    /// <summary>Removes and returns the head, the least recently freed block.</summary>
    /// <exception cref="InvalidOperationException">The queue is empty.</exception>
    public int PopHead()
    {
        if (_head == None)
        {
            throw new InvalidOperationException("no free block");
        }
        var block = _head;
        Unlink(block);
        return block;
    }

    /// <summary>Appends <paramref name="block"/> at the tail, making it the last to be reused.</summary>
    public void PushTail(int block)
    {
        _previous[block] = _tail;
        _next[block] = None;
        if (_tail == None)
        {
            _head = block;
        }
        else
        {
            _next[_tail] = block;
        }
        _tail = block;
        Count++;
    }

    /// <summary>Puts <paramref name="block"/> at the head, making it the next to be reused.</summary>
    public void PushHead(int block)
    {
        _previous[block] = None;
        _next[block] = _head;
        if (_head == None)
        {
            _tail = block;
        }
        else
        {
            _previous[_head] = block;
        }
        _head = block;
        Count++;
    }

    /// <summary>Removes <paramref name="block"/>, which must be in the queue, from wherever it is.</summary>
    public void Unlink(int block)
    {
        var previous = _previous[block];
        var next = _next[block];
        if (previous == None)
        {
            _head = next;
        }
        else
        {
            _next[previous] = next;
        }
        if (next == None)
        {
            _tail = previous;
        }
        else
        {
            _previous[next] = previous;
        }
        _previous[block] = None;
        _next[block] = None;
        Count--;
    }
}
