using RouteReplay.Cache;
using RouteReplay.Disaggregation;
using RouteReplay.Engine;
using RouteReplay.Storage;

namespace RouteReplay.Tests.Support;

/// <summary>
/// A prefill source over a second engine in the same process, pumped by the test on one thread: each import becomes a
/// request with a <see cref="BlockExport"/> on the prefill engine (as the transfer server makes it), and every export
/// item is sealed with the codec and handed to the import as a transfer delivers it, so the engine seams are tested
/// without sockets. Faults: fail after some items, corrupt a block's bytes, or stop delivering.
/// </summary>
public sealed class InProcessPrefill(LlmEngine prefill, string name = "in-process") : IPrefillSource, IRequestSink
{
    private readonly PayloadCodec _codec = new(prefill.PayloadLayout);
    private readonly List<Transfer> _transfers = [];

    public string Name { get; } = name;

    public LlmEngine Engine => prefill;

    /// <summary>Fail each import with an I/O error after this many items were delivered (null: never).</summary>
    public int? FailAfterItems { get; set; }

    /// <summary>Flip one payload byte of the first block delivered to each import.</summary>
    public bool CorruptFirstBlock { get; set; }

    /// <summary>Deliver nothing while set (the items wait).</summary>
    public bool Paused { get; set; }

    public List<BlockImport> Imports { get; } = [];

    /// <summary>The errors this source failed imports with (its own faults and verification failures).</summary>
    public List<Exception> Failures { get; } = [];

    /// <summary>Prefill engine request ids, in the order the imports started.</summary>
    public List<string> PrefillRequestIds { get; } = [];

    public void Start(BlockImport import)
    {
        Imports.Add(import);
        var export = new BlockExport(import.HeldBlocks, import.HeldRowDigests);
        var request = PrefillRequest.For(import, TimeSpan.FromSeconds(1)).ToEngineRequest(export);
        try
        {
            prefill.AddRequest(request, this);
        }
        catch (ArgumentException e)
        {
            import.Fail(e);
            return;
        }
        PrefillRequestIds.Add(request.RequestId);
        _transfers.Add(new Transfer(import, export, request.RequestId));
    }

    /// <summary>Delivers every item ready; true when something moved.</summary>
    public bool Pump()
    {
        var moved = false;
        foreach (var transfer in _transfers.ToArray())
        {
            if (transfer.Import.Cancellation.IsCancellationRequested)
            {
                prefill.Abort(transfer.PrefillId);
                End(transfer);
                moved = true;
                continue;
            }
            while (!Paused && transfer.Export.Items.TryRead(out var item))
            {
                moved = true;
                try
                {
                    if (FailAfterItems is { } limit && transfer.Delivered >= limit)
                    {
                        (item as ExportPayload)?.Block.Dispose();
                        throw new IOException($"{Name}: the connection dropped after {limit} items");
                    }
                    transfer.Delivered++;
                    if (Deliver(transfer, item))
                    {
                        End(transfer);
                        break;
                    }
                }
                catch (Exception e)
                {
                    Failures.Add(e);
                    transfer.Import.Fail(e);
                    prefill.Abort(transfer.PrefillId);
                    End(transfer);
                    break;
                }
            }
        }
        return moved;
    }

    /// <summary>Hands one item to the import; true when the transfer is over.</summary>
    private bool Deliver(Transfer transfer, ExportItem item)
    {
        var import = transfer.Import;
        switch (item)
        {
            case ExportAgreed agreed:
                import.Agree(agreed.Blocks);
                return false;
            case ExportBlock block:
                import.AddBlock(block.Index, Sealed(block.Block, CorruptFirstBlock && !transfer.Corrupted && (transfer.Corrupted = true)));
                return false;
            case ExportChoice choice:
                import.AddChoice(choice.Choice, Sealed(choice.Block, corrupt: false), choice.Token, choice.Logprob, choice.RandomState);
                return false;
            case ExportCompleted completed:
                import.Complete(completed.CachedTokens);
                return true;
            case ExportFailed failed:
                import.Fail(failed.Error);
                return true;
            default:
                throw new InvalidOperationException(item.GetType().Name);
        }
    }

    private PooledValue Sealed(OutgoingBlock block, bool corrupt)
    {
        using (block)
        {
            var sealedValue = block.Seal(_codec);
            var value = new PooledValue(sealedValue.Length);
            sealedValue.Span.CopyTo(value.Memory.Span);
            if (corrupt)
            {
                value.Memory.Span[_codec.HeaderBytes(block.TokenIds.Count) + 3] ^= 0x5A;
            }
            return value;
        }
    }

    private void End(Transfer transfer)
    {
        prefill.ReleaseExport(transfer.Export);
        while (transfer.Export.Items.TryRead(out var item))
        {
            (item as ExportPayload)?.Block.Dispose();
        }
        _transfers.Remove(transfer);
    }

    void IRequestSink.OnDelta(StreamDelta delta)
    {
    }

    void IRequestSink.OnFinished(RequestResult result)
    {
    }

    /// <summary>
    /// Steps the prefill engine, pumps, and steps the decode engine until neither has a request left; fails when nothing
    /// can move (an import waiting forever).
    /// </summary>
    public static void RunToCompletion(LlmEngine decode, params InProcessPrefill[] sources)
    {
        var idle = 0;
        while (decode.HasUnfinishedRequests || sources.Any(s => s.Engine.HasUnfinishedRequests || s._transfers.Count > 0))
        {
            var moved = false;
            foreach (var source in sources)
            {
                moved |= source.Engine.Step();
                moved |= source.Pump();
            }
            moved |= decode.Step();
            idle = moved ? 0 : idle + 1;
            if (idle > 3)
            {
                throw new Xunit.Sdk.XunitException("nothing moved: an import waits for blocks that never come");
            }
        }
    }

    private sealed class Transfer(BlockImport import, BlockExport export, string prefillId)
    {
        public BlockImport Import { get; } = import;

        public BlockExport Export { get; } = export;

        public string PrefillId { get; } = prefillId;

        public int Delivered { get; set; }

        public bool Corrupted { get; set; }
    }
}
