using System.Buffers;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using RouteReplay.Cache;
using RouteReplay.Engine;
using RouteReplay.Storage;

namespace RouteReplay.Disaggregation;

/// <summary>The prefill server's handshake refused this decode server: their block layouts or models differ.</summary>
public sealed class TransferRefusedException(string message) : IOException(message);

/// <summary>
/// A decode server's source of one prefill server: for each import it opens a TCP connection to the prefill server's
/// transfer port, sends the handshake (signed with the cluster key, when there is one) and the request at once, saving
/// a round trip, and feeds every frame into the <see cref="BlockImport"/> (which
/// verifies each payload), acknowledging at the end. A connection that fails, closes, or stays silent past
/// <see cref="DisaggregationOptions.TransferTimeoutMs"/> fails the import; the engine then retries, computes locally or
/// fails the request. Runs on the thread pool; never on the step thread.
/// </summary>
public sealed class TransferClient(TransferEndpoint endpoint, Func<PeerDescription> describe, DisaggregationOptions options, TransferStats stats) : IPrefillSource
{
    public string Name { get; } = endpoint.ToString();

    public void Start(BlockImport import)
    {
        ArgumentNullException.ThrowIfNull(import);
        stats.Began();
        _ = Task.Run(() => RunAsync(import));
    }

    private async Task RunAsync(BlockImport import)
    {
        var outcome = TransferOutcome.Failed;
        var started = Stopwatch.GetTimestamp();
        try
        {
            using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            using var closeOnCancel = import.Cancellation.Register(socket.Dispose);
            await ConnectAsync(socket, import.Cancellation).ConfigureAwait(false);
            await using var pipes = new Connection(new NetworkStream(socket, ownsSocket: false));
            var writer = pipes.Writer;
            var local = describe();
            var frames = new FrameReader(pipes.Reader, new PayloadCodec(local.Layout).EncodedLength(local.Layout.BlockSize) + 8192);
            var heartbeat = TimeSpan.FromMilliseconds(options.TransferTimeoutMs / 4.0);
            var description = local.Encode();
            var request = PrefillRequest.For(import, heartbeat).Encode();
            FrameWriter.Write(writer, TransferFrame.Hello, TransferHello.Encode(options.ClusterKey?.TransferTag(description, request) ?? [], description));
            FrameWriter.Write(writer, TransferFrame.Request, request);
            await writer.FlushAsync(import.Cancellation).ConfigureAwait(false);
            var reply = await NextAsync(frames, options.ConnectTimeoutMs, "the handshake", import.Cancellation).ConfigureAwait(false);
            if (reply.Type == TransferFrame.Refused)
            {
                outcome = TransferOutcome.Refused;
                throw new TransferRefusedException($"the prefill server at {Name} refused the transfer: {Text(reply.Body)}");
            }
            Expect(reply, TransferFrame.Accepted);
            while (true)
            {
                var frame = await NextAsync(frames, options.TransferTimeoutMs, "the transfer", import.Cancellation).ConfigureAwait(false);
                stats.Received(frame.Body.Length + 5, frame.Type is TransferFrame.Block or TransferFrame.Choice);
                if (frame.Type == TransferFrame.Done)
                {
                    var cached = (int)new BodyReader(frame.Body, "done").UInt32();
                    FrameWriter.Write(writer, TransferFrame.Ack);
                    await writer.FlushAsync(import.Cancellation).ConfigureAwait(false);
                    import.Complete(cached);
                    outcome = TransferOutcome.Ok;
                    return;
                }
                Apply(import, frame);
            }
        }
        catch (Exception) when (import.Cancellation.IsCancellationRequested)
        {
            outcome = TransferOutcome.Cancelled;
        }
        catch (Exception e)
        {
            import.Fail(e is OperationCanceledException ? new TimeoutException(e.Message, e) : e);
        }
        finally
        {
            stats.Ended(outcome, outcome == TransferOutcome.Ok ? Stopwatch.GetElapsedTime(started) : null);
        }
    }

    private async Task ConnectAsync(Socket socket, CancellationToken cancellation)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        timeout.CancelAfter(options.ConnectTimeoutMs);
        try
        {
            await socket.ConnectAsync(endpoint.Host, endpoint.Port, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
        {
            throw new TimeoutException($"connecting to the prefill server at {Name} took longer than {options.ConnectTimeoutMs} ms (--pd-connect-timeout-ms)");
        }
        catch (SocketException e)
        {
            throw new IOException($"cannot connect to the prefill server at {Name}: {e.Message}", e);
        }
    }

    private void Apply(BlockImport import, Frame frame)
    {
        switch (frame.Type)
        {
            case TransferFrame.Heartbeat:
                return;
            case TransferFrame.Agreed:
                import.Agree((int)new BodyReader(frame.Body, "agreed").UInt32());
                return;
            case TransferFrame.Block:
                {
                    var reader = new BodyReader(frame.Body, "block");
                    var index = (int)reader.UInt32();
                    import.AddBlock(index, Copy(reader.Rest()));
                    return;
                }
            case TransferFrame.Choice:
                {
                    var reader = new BodyReader(frame.Body, "choice");
                    var (choice, token, random, logprob) = ChoiceHead.Read(ref reader);
                    import.AddChoice(choice, Copy(reader.Rest()), token, logprob, random);
                    return;
                }
            case TransferFrame.Error:
                throw new IOException($"the prefill server at {Name} failed the request: {Text(frame.Body)}");
            default:
                throw new InvalidDataException($"the prefill server at {Name} sent an unexpected {frame.Type} frame");
        }
    }

    private async Task<Frame> NextAsync(FrameReader frames, int timeoutMs, string during, CancellationToken cancellation)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        timeout.CancelAfter(timeoutMs);
        Frame? frame;
        try
        {
            frame = await frames.ReadAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
        {
            throw new TimeoutException($"the prefill server at {Name} sent nothing for {timeoutMs} ms during {during}");
        }
        catch (IOException e)
        {
            throw new IOException($"the connection to the prefill server at {Name} failed during {during}: {e.Message}", e);
        }
        return frame ?? throw new IOException($"the prefill server at {Name} closed the connection during {during}");
    }

    private void Expect(Frame frame, TransferFrame type)
    {
        if (frame.Type != type)
        {
            throw new InvalidDataException($"the prefill server at {Name} sent {frame.Type} where {type} was expected");
        }
    }

    private static PooledValue Copy(ReadOnlySequence<byte> bytes)
    {
        var value = new PooledValue((int)bytes.Length);
        bytes.CopyTo(value.Memory.Span);
        return value;
    }

    private static string Text(ReadOnlySequence<byte> body) => System.Text.Encoding.UTF8.GetString(body);
}

/// <summary>The head of a <see cref="TransferFrame.Choice"/> frame: choice, first token, sampler state and logprob; the encoded last block follows.</summary>
internal static class ChoiceHead
{
    public static byte[] Write(int choice, int token, ulong randomState, TokenLogprob? logprob)
    {
        var writer = new BodyWriter().UInt16((ushort)choice).Int32(token).UInt64(randomState).Byte(logprob is null ? (byte)0 : (byte)1);
        if (logprob is not null)
        {
            writer.Single(logprob.Logprob).UInt16((ushort)logprob.TopAlternatives.Count);
            foreach (var (id, value) in logprob.TopAlternatives)
            {
                writer.Int32(id).Single(value);
            }
        }
        return writer.WrittenSpan.ToArray();
    }

    public static (int Choice, int Token, ulong RandomState, TokenLogprob? Logprob) Read(ref BodyReader reader)
    {
        var choice = reader.UInt16();
        var token = reader.Int32();
        var random = reader.UInt64();
        if (reader.Byte() == 0)
        {
            return (choice, token, random, null);
        }
        var logprob = reader.Single();
        var count = reader.UInt16();
        if (count > 64)
        {
            throw new InvalidDataException($"the peer's choice frame carries {count} top logprobs");
        }
        var alternatives = new (int, float)[count];
        for (var i = 0; i < count; i++)
        {
            alternatives[i] = (reader.Int32(), reader.Single());
        }
        return (choice, token, random, new TokenLogprob(token, logprob, alternatives));
    }
}
