namespace RouteReplay.Server;

/// <summary>
/// The server stopped because its engine did (a device fault, or block accounting that can no longer be trusted): the
/// process should exit non-zero so that a supervisor restarts it. The server has logged why.
/// </summary>
public sealed class EngineStoppedException(Exception cause) : Exception($"the engine stopped: {cause.Message}", cause);
