namespace RouteReplay.Server.Router;

/// <summary>
/// The prompt blocks recently sent to one worker (the router's approximation of its prefix cache), at most a given
/// number, the least recently used forgotten first. A prompt's blocks are remembered from its last to its first, so a
/// block is never older than the blocks after it: forgetting takes a prompt's tail before its head, and a prefix that
/// is remembered is remembered from its start.
/// </summary>
internal sealed class RecentPrefixes(int capacity)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, LinkedListNode<ulong>> _blocks = [];
    private readonly LinkedList<ulong> _byUse = new();

    /// <summary>Blocks remembered now.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _blocks.Count;
            }
        }
    }

    /// <summary>How many of the prompt's leading blocks are remembered.</summary>
    public int Match(PromptKey prompt)
    {
        lock (_lock)
        {
            var matched = 0;
            while (matched < prompt.Blocks.Length && _blocks.ContainsKey(prompt.Blocks[matched]))
            {
                matched++;
            }
            return matched;
        }
    }

    /// <summary>Remembers every block of the prompt as just used.</summary>
    public void Remember(PromptKey prompt)
    {
        lock (_lock)
        {
            for (var b = prompt.Blocks.Length - 1; b >= 0; b--)
            {
                var hash = prompt.Blocks[b];
                if (_blocks.TryGetValue(hash, out var node))
                {
                    _byUse.Remove(node);
                    _byUse.AddFirst(node);
                    continue;
                }
                _blocks[hash] = _byUse.AddFirst(hash);
                if (_blocks.Count > capacity)
                {
                    _blocks.Remove(_byUse.Last!.Value);
                    _byUse.RemoveLast();
                }
            }
        }
    }

    public void Clear()
    {
        lock (_lock)
        {
            _blocks.Clear();
            _byUse.Clear();
        }
    }
}
