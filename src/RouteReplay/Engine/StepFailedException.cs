namespace RouteReplay.Engine;

/// <summary>
/// The error a request ends with when a step it was part of threw (in the forward, the capture of its rows, or the
/// sampling and delivery after it). The request returns no routing; <see cref="Exception.InnerException"/> is the cause.
/// </summary>
public sealed class StepFailedException(string message, Exception cause) : Exception(message, cause);
