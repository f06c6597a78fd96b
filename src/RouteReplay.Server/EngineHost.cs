using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using RouteReplay.Backends;
using RouteReplay.Disaggregation;
using RouteReplay.Engine;
using RouteReplay.Model.Checkpoints;
using RouteReplay.Model.Tokenization;
using RouteReplay.Routing;
using RouteReplay.Server.Disaggregation;
using RouteReplay.Server.Http;
using RouteReplay.Server.Metrics;

namespace RouteReplay.Server;

/// <summary>
/// The one engine every HTTP request shares, with admission control (503 past the waiting limit), the weight gate
/// and the server's counters. In a prefill/decode split it is also the prefill role's engine for transfers
/// (<see cref="IPrefillHost"/>) and, on the decode role, turns the router's <see cref="PrefillHeader"/> into a request's
/// remote prefill.
/// </summary>
public sealed class EngineHost : IAsyncDisposable, IPrefillHost
{
    /// <summary>
    /// The header a router sends a decode server: the transfer addresses (<c>host:port</c>, comma-separated) of the
    /// prefill servers to compute the prompt on, the chosen one first, the others for retries.
    /// </summary>
    public const string PrefillHeader = FleetHeaders.Prefill;

    private PeerDescription _description;
    private readonly ILogger _logger;
    private int _admitted;
    private int _abortingForShutdown;
    private string _modelPath;
    private string _weightVersion;

    public EngineHost(AsyncEngine engine, ServerOptions options, string weightVersion, ILogger logger)
    {
        Engine = engine;
        Options = options;
        _logger = logger;
        _modelPath = options.ModelPath;
        _weightVersion = weightVersion;
        var llm = engine.Engine;
        Tokenizer = llm.Tokenizer;
        RoutingFormat = llm.RoutingFormat;
        ModelConfig = llm.ModelConfig;
        EngineOptions = llm.Options;
        EosTokenIds = llm.EosTokenIds;
        AdmissionLimit = EngineOptions.MaxNumSeqs + options.MaxWaitingRequests;
        _description = PeerDescription.Of(llm);
        llm.Log = message => _logger.LogWarning("{Message}", message);
        Memory = new MemoryOccupation(this, logger);
        llm.MemoryStateChanged = Memory.OnChanged;
        PrefillTrust = new PrefillTrust(options.Disaggregation, new RateLimitedLog(message => _logger.LogWarning("{Message}", message), RateLimitedLog.DefaultInterval));
    }

    /// <summary>Decode role: which prefill servers a request may name.</summary>
    public PrefillTrust PrefillTrust { get; }

    /// <summary>Decode role: the requests a router relayed here, by the router's ids.</summary>
    public RelayedRequests Relayed { get; } = new();

    /// <summary>The server's part in a prefill/decode split.</summary>
    public ServerRole Role => Options.Disaggregation.Role;

    /// <summary>Counters of this server's transfers (either role).</summary>
    public TransferStats Transfers { get; } = new();

    /// <summary>The prefill role's bound transfer port, once listening.</summary>
    public int? TransferPort { get; internal set; }

    /// <summary>This engine's handshake description, refreshed with the weights.</summary>
    public PeerDescription Description => Volatile.Read(ref _description);

    /// <summary>
    /// On a decode server, <paramref name="request"/> with a remote prefill on the prefill servers named in
    /// <see cref="PrefillHeader"/> that it trusts (<see cref="PrefillTrust"/>); unchanged without the header, when it
    /// trusts none of them, or on another role. Also remembers the request under its router's relay id, and starts the
    /// response's <see cref="FleetHeaders.Prompt"/> headers.
    /// </summary>
    /// <exception cref="ApiException">400 when a trusted header is not a list of <c>host:port</c>.</exception>
    public EngineRequest WithRemotePrefill(EngineRequest request, HttpRequest http)
    {
        if (Role != ServerRole.Decode)
        {
            return request;
        }
        Relayed.Track(http, request.RequestId);
        if (!http.Headers.ContainsKey(PrefillHeader))
        {
            PromptSourceHeaders.WriteLocal(http.HttpContext.Response, null);
            return request;
        }
        var (trusted, ignored) = PrefillTrust.Check(http);
        if (trusted.Count == 0)
        {
            PromptSourceHeaders.WriteLocal(http.HttpContext.Response, ignored);
            return request;
        }
        var sources = trusted.Select(endpoint => (IPrefillSource)new TransferClient(endpoint, () => Description, Options.Disaggregation, Transfers)).ToArray();
        return request with { RemotePrefill = new RemotePrefill(sources, Options.Disaggregation.Fallback) };
    }

    async Task<IDisposable> IPrefillHost.StartAsync(EngineRequest request, CancellationToken cancellationToken) =>
        await StartAsync(request, FieldNames.Engine, countsOutcome: false, cancellationToken).ConfigureAwait(false);

    Task IPrefillHost.ReleaseAsync(BlockExport export) => Engine.InvokeAsync(e =>
    {
        e.ReleaseExport(export);
        return true;
    });

    public AsyncEngine Engine { get; }

    public ServerOptions Options { get; }

    public ServerMetrics Metrics { get; } = new();

    public WeightGate Gate { get; } = new();

    /// <summary>Sharing the GPU: releases, resumes, and the requests waiting for a resume.</summary>
    public MemoryOccupation Memory { get; }

    public TextTokenizer Tokenizer { get; }

    public RoutingFormat RoutingFormat { get; }

    public ModelConfig ModelConfig { get; }

    public EngineOptions EngineOptions { get; }

    public IReadOnlySet<int> EosTokenIds { get; }

    public string ModelName => Options.ResolvedModelName;

    public DateTimeOffset StartedAt { get; } = DateTimeOffset.UtcNow;

    /// <summary>Most choices admitted at once: those the engine runs in a step plus those allowed to wait.</summary>
    public int AdmissionLimit { get; }

    /// <summary>Choices admitted and not finished.</summary>
    public int Admitted => Volatile.Read(ref _admitted);

    public string ModelPath => Volatile.Read(ref _modelPath);

    public string WeightVersion => Volatile.Read(ref _weightVersion);

    /// <summary>True once the shutdown grace period has ended: every request is aborted, those still starting too.</summary>
    public bool IsAbortingForShutdown => Volatile.Read(ref _abortingForShutdown) != 0;

    /// <summary>
    /// <paramref name="n"/>, when a request of that many choices can ever be admitted: no more than
    /// <see cref="AdmissionLimit"/>. A larger one would get 503 forever, so it is the client's error.
    /// </summary>
    /// <param name="field">The field the client wrote <paramref name="n"/> in.</param>
    /// <exception cref="ApiException">400 naming <paramref name="field"/> and the limit.</exception>
    public int AdmissibleChoices(int n, string field)
    {
        if (n > AdmissionLimit)
        {
            throw ApiException.BadRequest(
                $"'{field}' is {n}, more choices than this server ever admits at once: {AdmissionLimit} " +
                $"(--max-num-seqs {EngineOptions.MaxNumSeqs} running plus --max-waiting-requests {Options.MaxWaitingRequests} waiting)",
                field);
        }
        return n;
    }

    /// <summary>Admits a request of <paramref name="choices"/> choices, or throws 503 when the waiting queue is full.</summary>
    public Admission Admit(int choices)
    {
        if (Interlocked.Add(ref _admitted, choices) > AdmissionLimit)
        {
            Interlocked.Add(ref _admitted, -choices);
            Metrics.Count(RequestOutcome.Rejected);
            throw new ApiException(503, $"the server is at capacity ({AdmissionLimit} choices running or waiting); retry later", null, "queue_full")
            {
                RetryAfterSeconds = 1,
            };
        }
        return new Admission(this, choices);
    }

    /// <summary>
    /// Admits and starts <paramref name="request"/>: waits while a weight update runs or the memory is released (503 past
    /// <see cref="ServerOptions.SleepWaitTimeout"/>), then queues it in the engine.
    /// Dispose the result when done (it aborts the request when it has not finished). How the request ended is counted
    /// once in <see cref="Metrics"/>: by <see cref="RunningRequest.CountOutcome"/>, else when the result is disposed.
    /// </summary>
    /// <param name="names">The fields as the client wrote them, for the engine's refusals.</param>
    /// <param name="cancellationToken">Cancelled when the client goes away.</param>
    /// <exception cref="ApiException">503 when full; 400 naming the client's field when the engine rejects the request.</exception>
    public Task<RunningRequest> StartAsync(EngineRequest request, FieldNames names, CancellationToken cancellationToken) =>
        StartAsync(request, names, countsOutcome: true, cancellationToken);

    private async Task<RunningRequest> StartAsync(EngineRequest request, FieldNames names, bool countsOutcome, CancellationToken cancellationToken)
    {
        var admission = Admit(request.N);
        WeightGate.Pass? pass = null;
        try
        {
            pass = await Memory.EnterAsync(cancellationToken).ConfigureAwait(false);
            var stream = await Engine.StartAsync(request).ConfigureAwait(false);
            if (IsAbortingForShutdown)
            {
                // Accepted after the shutdown's abort of everything: it ends as the others did.
                stream.Abort();
            }
            return new RunningRequest(stream, pass, admission, countsOutcome ? Metrics : null, cancellationToken, request.RemotePrefill?.Report);
        }
        catch (ArgumentException e)
        {
            pass?.Dispose();
            admission.Dispose();
            Metrics.Count(RequestOutcome.Rejected);
            throw names.BadRequest(e);
        }
        catch (ApiException) when (pass is null)
        {
            // Refused while the memory was released; counted as rejected there.
            admission.Dispose();
            throw;
        }
        catch
        {
            pass?.Dispose();
            admission.Dispose();
            if (countsOutcome)
            {
                Metrics.Count(cancellationToken.IsCancellationRequested ? RequestOutcome.Disconnected : RequestOutcome.Error);
            }
            throw;
        }
    }

    /// <summary>
    /// Loads a checkpoint of the same architecture and makes it live. New requests wait; requests in flight finish
    /// with the old weights (or are aborted first when <paramref name="abortAll"/>); then the weights are copied, block
    /// keys are re-rooted at the new fingerprint and the prefix cache is cleared.
    /// </summary>
    /// <returns>How many requests were aborted.</returns>
    public async Task<int> UpdateWeightsAsync(string modelPath, string? weightVersion, bool abortAll, CancellationToken cancellationToken)
    {
        CheckModelPath(modelPath);
        if (!Directory.Exists(modelPath))
        {
            throw ApiException.BadRequest($"model_path '{modelPath}' is not a folder", "model_path");
        }
        WeightUpdate update;
        try
        {
            update = await Task.Run(() => Engine.Engine.PrepareWeightUpdate(modelPath, weightVersion), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is CheckpointException or ArgumentException or InvalidDataException or IOException or NotSupportedException or UnauthorizedAccessException)
        {
            throw ApiException.BadRequest($"cannot load weights from '{modelPath}': {AsGiven(UserErrors.Message(e), modelPath)}", "model_path");
        }
        var aborted = await ApplyAsync(update, weightVersion, abortAll, cancellationToken).ConfigureAwait(false);
        Volatile.Write(ref _modelPath, modelPath);
        _logger.LogInformation("Weights updated from {Path} (version {Version}); prefix cache cleared, {Aborted} requests aborted", Path.GetFullPath(modelPath), WeightVersion, aborted);
        return aborted;
    }

    /// <summary>
    /// Copies tensors a process on this machine shares through CUDA IPC into the weights, under the same rules as
    /// <see cref="UpdateWeightsAsync"/>; the tensors may be part of the model (the rest keeps its weights).
    /// </summary>
    /// <returns>How many requests were aborted.</returns>
    /// <exception cref="ApiException">400 naming the field (<c>tensors[i].name</c>, ...) or saying the backend is not CUDA.</exception>
    public async Task<int> UpdateWeightsFromIpcAsync(IReadOnlyList<IpcTensor> tensors, string? weightVersion, bool abortAll, CancellationToken cancellationToken)
    {
        WeightUpdate update;
        try
        {
            update = Engine.Engine.PrepareIpcWeightUpdate(tensors, weightVersion);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest(UserErrors.Message(e), e.ParamName);
        }
        catch (NotSupportedException e)
        {
            throw ApiException.BadRequest(e.Message);
        }
        int aborted;
        try
        {
            aborted = await ApplyAsync(update, weightVersion, abortAll, cancellationToken).ConfigureAwait(false);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest(UserErrors.Message(e), e.ParamName);
        }
        _logger.LogInformation("Weights updated from {Count} shared tensors (version {Version}); prefix cache cleared, {Aborted} requests aborted", tensors.Count, WeightVersion, aborted);
        return aborted;
    }

    /// <summary>
    /// Closes the gate (aborting what runs when <paramref name="abortAll"/>), waits for the requests inside to leave,
    /// makes <paramref name="update"/> live and reopens the gate; returns how many requests were aborted.
    /// </summary>
    private async Task<int> ApplyAsync(WeightUpdate update, string? weightVersion, bool abortAll, CancellationToken cancellationToken)
    {
        var aborted = 0;
        using (await Gate.BeginUpdateAsync(
            abortAll ? async () => aborted = await Engine.InvokeAsync(e => e.AbortAll()).ConfigureAwait(false) : null,
            cancellationToken).ConfigureAwait(false))
        {
            await Engine.InvokeAsync(e =>
            {
                e.ApplyWeightUpdate(update);
                Volatile.Write(ref _description, PeerDescription.Of(e));
                return true;
            }).ConfigureAwait(false);
            Volatile.Write(ref _weightVersion, weightVersion ?? update.WeightsIdentity);
        }
        return aborted;
    }

    /// <summary>
    /// Runs once the server stops accepting requests: after <paramref name="grace"/> every request still running is
    /// aborted, so each ends with finish reason abort, its final chunk and the routing of the tokens it produced.
    /// </summary>
    public async Task AbortAfterGraceAsync(TimeSpan grace, CancellationToken stopped)
    {
        try
        {
            await Task.Delay(grace, stopped).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }
        Volatile.Write(ref _abortingForShutdown, 1);
        try
        {
            var aborted = await Engine.InvokeAsync(e => e.AbortAll()).ConfigureAwait(false);
            if (aborted > 0)
            {
                _logger.LogInformation("Shutdown grace period of {Seconds} s over: aborted {Count} requests still running", grace.TotalSeconds, aborted);
            }
        }
        catch (InvalidOperationException)
        {
            // The engine has stopped already: nothing is running.
        }
    }

    private static void CheckModelPath(string modelPath)
    {
        if (modelPath.Length == 0)
        {
            throw ApiException.BadRequest("'model_path' must not be empty: give a checkpoint folder", "model_path");
        }
        if (modelPath.Contains('\0', StringComparison.Ordinal))
        {
            throw ApiException.BadRequest("'model_path' must not contain a NUL character", "model_path");
        }
    }

    /// <summary>
    /// <paramref name="message"/> with the absolute form of a relative <paramref name="modelPath"/> written as the client
    /// gave it, so errors never show the server's working directory.
    /// </summary>
    private static string AsGiven(string message, string modelPath)
    {
        if (Path.IsPathFullyQualified(modelPath))
        {
            return message;
        }
        var absolute = Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelPath));
        return Path.GetPathRoot(absolute) == absolute ? message : message.Replace(absolute, Path.TrimEndingDirectorySeparator(modelPath), StringComparison.Ordinal);
    }

    public ValueTask DisposeAsync() => Engine.DisposeAsync();

    /// <summary>A place in the admission count; disposing gives it back.</summary>
    public sealed class Admission(EngineHost host, int choices) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                Interlocked.Add(ref host._admitted, -choices);
            }
        }
    }

    /// <summary>
    /// A request accepted by the engine, with its admission and gate pass; disposing releases all three. With
    /// <paramref name="metrics"/>, its outcome is counted there once: the first <see cref="CountOutcome"/>, else on
    /// disposal as disconnected (when <paramref name="clientGone"/> is cancelled) or as an error.
    /// </summary>
    public sealed class RunningRequest(AsyncEngine.RequestStream stream, WeightGate.Pass pass, Admission admission, ServerMetrics? metrics, CancellationToken clientGone, PrefillReport? prefill = null) : IDisposable
    {
        private int _counted;

        public AsyncEngine.RequestStream Stream { get; } = stream;

        /// <summary>What became of the request's remote prefill; null without one.</summary>
        public PrefillReport? Prefill { get; } = prefill;

        /// <summary>Counts how the request ended; later calls count nothing.</summary>
        public void CountOutcome(RequestOutcome outcome)
        {
            if (metrics is not null && Interlocked.Exchange(ref _counted, 1) == 0)
            {
                metrics.Count(outcome);
            }
        }

        public void Dispose()
        {
            CountOutcome(clientGone.IsCancellationRequested ? RequestOutcome.Disconnected : RequestOutcome.Error);
            Stream.Dispose();
            pass.Dispose();
            admission.Dispose();
        }
    }
}
