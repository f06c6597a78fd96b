namespace RouteReplay.Routing;

/// <summary>A returned routing row still held the unset sentinel: the request fails instead of returning wrong rows.</summary>
public sealed class RoutingIntegrityException(string message) : Exception(message);
