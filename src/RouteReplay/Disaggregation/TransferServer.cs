using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using RouteReplay.Cache;
using RouteReplay.Engine;

namespace RouteReplay.Disaggregation;

/// <summary>The engine a <see cref="TransferServer"/> computes prompts on.</summary>
public interface IPrefillHost
{
    /// <summary>The engine's current handshake description (safe from any thread; it changes with the weights).</summary>
    PeerDescription Description { get; }

    /// <summary>Admits and starts a request; disposing the result aborts it if it still runs.</summary>
    Task<IDisposable> StartAsync(EngineRequest request, CancellationToken cancellationToken);

    /// <summary>Releases the blocks an export holds (<see cref="LlmEngine.ReleaseExport"/>, on the step thread).</summary>
    Task ReleaseAsync(BlockExport export);
}

/// <summary>
/// The prefill role's listener: one TCP connection per transfer. It reads the hello and the request, refuses a decode
/// server whose block layout or model differs (or, with a <see cref="DisaggregationOptions.ClusterKey"/>, whose request
/// is not signed with it), then computes the request on the engine with a <see cref="BlockExport"/> and sends every item as the
/// steps produce it (heartbeats while nothing else goes out), and finally waits for the acknowledgement. The blocks
/// the export holds are released when the decode server acknowledges, closes the connection, or stays silent past
/// <see cref="DisaggregationOptions.HoldTimeoutMs"/>; a decode server that goes away mid-prefill aborts the request.
/// </summary>
public sealed class TransferServer : IAsyncDisposable
{
    /// <summary>Largest frame a decode server may send (a request of 16M prompt tokens and its digests).</summary>
    private const int MaxRequestFrameBytes = 80 << 20;

    private static readonly TimeSpan AcceptRetryDelay = TimeSpan.FromMilliseconds(100);

    private readonly IPrefillHost _host;
    private readonly DisaggregationOptions _options;
    private readonly RateLimitedLog _log;
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stopping = new();
    private readonly CancellationTokenSource _accepting = new();
    private readonly HashSet<Task> _connections = [];
    private readonly Lock _lock = new();
    private Task? _acceptLoop;

    /// <param name="log">Where warnings go; those a peer causes are rate-limited (one line of a kind per <paramref name="logInterval"/>).</param>
    public TransferServer(IPrefillHost host, IPAddress address, DisaggregationOptions options, TransferStats stats, Action<string> log, TimeSpan? logInterval = null, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(address);
        _host = host;
        _options = options.Validate();
        Stats = stats;
        _log = new RateLimitedLog(log, logInterval ?? RateLimitedLog.DefaultInterval, time);
        _listener = new TcpListener(address, options.TransferPort);
    }

    public TransferStats Stats { get; }

    /// <summary>Transfer connections served at once; more are closed as soon as they are accepted, and counted.</summary>
    public long? MaxConnections { get; init; }

    /// <summary>The bound port (the real one when 0 was asked), once started.</summary>
    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Binds the port and starts accepting transfers.</summary>
    /// <exception cref="SocketException">The port cannot be bound.</exception>
    public void Start()
    {
        _listener.Start(backlog: 512);
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    /// <summary>Accepts no more transfers (the server is shutting down); those in progress go on.</summary>
    public void StopAccepting() => _accepting.Cancel();

    private async Task AcceptLoopAsync()
    {
        while (!_accepting.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptSocketAsync(_accepting.Token).ConfigureAwait(false);
            }
            catch (Exception) when (_accepting.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException e)
            {
                // Out of file descriptors, the pending connection stays queued: retrying at once would spin.
                _log.Write("accept", $"accepting a transfer connection failed: {e.Message}");
                await Task.Delay(AcceptRetryDelay).ConfigureAwait(false);
                continue;
            }
            Task connection;
            lock (_lock)
            {
                if (_connections.Count >= MaxConnections)
                {
                    socket.Dispose();
                    Stats.RefusedConnection();
                    continue;
                }
                socket.NoDelay = true;
                connection = Task.Run(() => ServeAsync(socket));
                _connections.Add(connection);
            }
            _ = connection.ContinueWith(
                done =>
                {
                    lock (_lock)
                    {
                        _connections.Remove(done);
                    }
                },
                TaskScheduler.Default);
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        Stats.Began();
        var outcome = TransferOutcome.Failed;
        var started = Stopwatch.GetTimestamp();
        var peer = socket.RemoteEndPoint?.ToString() ?? "a decode server";
        BlockExport? export = null;
        IDisposable? running = null;
        Task<Frame?>? acknowledgement = null;
        using var connection = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        try
        {
            await using var pipes = new Connection(new NetworkStream(socket, ownsSocket: true));
            var writer = pipes.Writer;
            var frames = new FrameReader(pipes.Reader, MaxRequestFrameBytes);
            var local = _host.Description;
            var first = await NextAsync(frames, connection.Token).ConfigureAwait(false) ?? throw new IOException("the decode server closed the connection before the handshake");
            if (first.Type != TransferFrame.Hello)
            {
                throw new InvalidDataException($"a {first.Type} frame arrived where the handshake was expected");
            }
            var hello = TransferHello.Decode(first.Body);
            var frame = await NextAsync(frames, connection.Token).ConfigureAwait(false) ?? throw new IOException("the decode server closed the connection before its request");
            if (frame.Type != TransferFrame.Request)
            {
                throw new InvalidDataException($"a {frame.Type} frame arrived where a request was expected");
            }
            if (Handshake(hello, frame.Body, local) is { } refusal)
            {
                outcome = TransferOutcome.Refused;
                _log.Write(refusal.Kind, $"refused a transfer from {peer}: {refusal.Reason}");
                FrameWriter.WriteText(writer, TransferFrame.Refused, refusal.Reason);
                await FlushAsync(writer, connection.Token).ConfigureAwait(false);
                return;
            }
            FrameWriter.Write(writer, TransferFrame.Accepted);
            await FlushAsync(writer, connection.Token).ConfigureAwait(false);
            var request = PrefillRequest.Decode(frame.Body);
            export = new BlockExport(request.HeldRowDigests.Length, request.HeldRowDigests);
            acknowledgement = frames.ReadAsync(CancellationToken.None).AsTask();
            var sending = SendAsync(writer, export, new PayloadCodec(local.Layout), TimeSpan.FromMilliseconds(request.HeartbeatMilliseconds), acknowledgement, connection.Token);
            try
            {
                running = await _host.StartAsync(request.ToEngineRequest(export), connection.Token).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                export.Post(new ExportFailed(e));
            }
            if (!await sending.ConfigureAwait(false))
            {
                return;
            }
            Frame? ack;
            try
            {
                ack = await acknowledgement.WaitAsync(TimeSpan.FromMilliseconds(_options.HoldTimeoutMs), connection.Token).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                throw new TimeoutException("did not acknowledge the blocks");
            }
            outcome = ack?.Type == TransferFrame.Ack ? TransferOutcome.Ok : TransferOutcome.Failed;
            if (outcome != TransferOutcome.Ok)
            {
                _log.Write("unacknowledged", $"the decode server at {peer} closed the transfer without acknowledging it; its held blocks are released");
            }
        }
        catch (TimeoutException e)
        {
            outcome = TransferOutcome.HoldTimeout;
            _log.Write("hold-timeout", $"the decode server at {peer} {e.Message} for {_options.HoldTimeoutMs} ms (--pd-hold-timeout-ms); the transfer is dropped and its held blocks released");
        }
        catch (Exception) when (_stopping.IsCancellationRequested)
        {
            outcome = TransferOutcome.Cancelled;
        }
        catch (Exception e)
        {
            _log.Write("failed", $"a transfer to {peer} failed: {e.Message}");
        }
        finally
        {
            connection.Cancel();
            running?.Dispose();
            _ = acknowledgement?.ContinueWith(read => read.Exception, TaskContinuationOptions.OnlyOnFaulted);
            if (export is not null)
            {
                await ReleaseAsync(export).ConfigureAwait(false);
            }
            Stats.Ended(outcome, outcome == TransferOutcome.Ok ? Stopwatch.GetElapsedTime(started) : null);
        }
    }

    /// <summary>Null when the hello and its request are acceptable, else the kind of refusal (for the log) and its reason.</summary>
    private (string Kind, string Reason)? Handshake(TransferHello hello, ReadOnlySequence<byte> request, PeerDescription local)
    {
        if (hello.Version != FrameReader.ProtocolVersion)
        {
            return ("version", $"the transfer protocol versions differ: {FrameReader.ProtocolVersion} on the prefill server, {hello.Version} on the decode server");
        }
        if (_options.ClusterKey is { } key && !key.IsTransferTag(hello.Tag, hello.Description, request.ToArray()))
        {
            return ("unauthenticated", hello.Tag.Length == 0
                ? "the decode server sent no cluster key tag, and this prefill server serves only peers with its --cluster-key"
                : "the decode server's cluster key tag does not match: the two servers were given different --cluster-key values");
        }
        return PeerDescription.Difference(local, PeerDescription.Decode(hello.Description)) is { } difference ? ("mismatch", difference) : null;
    }

    /// <summary>
    /// Sends the export's items as they come, a heartbeat whenever none came for <paramref name="heartbeat"/>. True
    /// after the end was sent; false after an error was sent. Throws when the decode server goes away first.
    /// </summary>
    private async Task<bool> SendAsync(PipeWriter writer, BlockExport export, PayloadCodec codec, TimeSpan heartbeat, Task<Frame?> peerFrame, CancellationToken cancellation)
    {
        var items = export.Items;
        while (true)
        {
            using (var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellation))
            {
                var ready = items.WaitToReadAsync(wait.Token).AsTask();
                var first = await Task.WhenAny(ready, peerFrame, Task.Delay(heartbeat, wait.Token)).ConfigureAwait(false);
                await wait.CancelAsync().ConfigureAwait(false);
                if (first == peerFrame)
                {
                    throw new IOException("the decode server closed the connection before the blocks were sent");
                }
                if (first != ready)
                {
                    FrameWriter.Write(writer, TransferFrame.Heartbeat);
                    await FlushAsync(writer, cancellation).ConfigureAwait(false);
                    continue;
                }
                if (!await ready.ConfigureAwait(false))
                {
                    return false;
                }
            }
            while (items.TryRead(out var item))
            {
                if (Write(writer, item, codec) is { } ended)
                {
                    await FlushAsync(writer, cancellation).ConfigureAwait(false);
                    return ended;
                }
            }
            await FlushAsync(writer, cancellation).ConfigureAwait(false);
        }
    }

    /// <summary>Writes one item's frame; true or false when it was the end (done, error), else null.</summary>
    private bool? Write(PipeWriter writer, ExportItem item, PayloadCodec codec)
    {
        switch (item)
        {
            case ExportAgreed agreed:
                FrameWriter.WriteUInt32(writer, TransferFrame.Agreed, (uint)agreed.Blocks);
                return null;
            case ExportBlock block:
                using (block.Block)
                {
                    var value = block.Block.Seal(codec);
                    FrameWriter.WriteUInt32(writer, TransferFrame.Block, (uint)block.Index, value.Span);
                    Stats.Sent(value.Length + 9, block: true);
                }
                return null;
            case ExportChoice choice:
                using (choice.Block)
                {
                    var value = choice.Block.Seal(codec);
                    var head = ChoiceHead.Write(choice.Choice, choice.Token, choice.RandomState, choice.Logprob);
                    FrameWriter.Write(writer, TransferFrame.Choice, head, value.Span);
                    Stats.Sent(value.Length + head.Length + 5, block: true);
                }
                return null;
            case ExportCompleted completed:
                FrameWriter.WriteUInt32(writer, TransferFrame.Done, (uint)completed.CachedTokens);
                return true;
            case ExportFailed failed:
                FrameWriter.WriteText(writer, TransferFrame.Error, UserErrors.Message(failed.Error));
                return false;
            default:
                throw new InvalidOperationException($"unknown export item {item.GetType().Name}");
        }
    }

    /// <summary>A flush bounded by the hold timeout: a decode server that stops reading cannot pin the held blocks.</summary>
    private async Task FlushAsync(PipeWriter writer, CancellationToken cancellation)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        timeout.CancelAfter(_options.HoldTimeoutMs);
        try
        {
            await writer.FlushAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
        {
            throw new TimeoutException("stopped reading");
        }
    }

    private async Task<Frame?> NextAsync(FrameReader frames, CancellationToken cancellation)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        timeout.CancelAfter(_options.HoldTimeoutMs);
        try
        {
            return await frames.ReadAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
        {
            throw new TimeoutException("sent nothing");
        }
    }

    /// <summary>Releases the export's holds on the engine and frees what was never sent.</summary>
    private async Task ReleaseAsync(BlockExport export)
    {
        try
        {
            await _host.ReleaseAsync(export).ConfigureAwait(false);
        }
        catch (InvalidOperationException)
        {
            // The engine has stopped: its blocks are gone with it.
        }
        while (export.Items.TryRead(out var item))
        {
            (item as ExportPayload)?.Block.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _accepting.CancelAsync().ConfigureAwait(false);
        await _stopping.CancelAsync().ConfigureAwait(false);
        _listener.Stop();
        if (_acceptLoop is not null)
        {
            await _acceptLoop.ConfigureAwait(false);
        }
        Task[] connections;
        lock (_lock)
        {
            connections = [.. _connections];
        }
        await Task.WhenAll(connections).ConfigureAwait(false);
        _listener.Dispose();
        _stopping.Dispose();
        _accepting.Dispose();
    }
}
