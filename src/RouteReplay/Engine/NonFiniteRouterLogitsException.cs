namespace RouteReplay.Engine;

/// <summary>
/// The error a request ends with when a router saw logits that are not finite (NaN or infinite) for one of its tokens:
/// its routing would be meaningless, so it fails loudly instead. The step's other requests are unaffected.
/// </summary>
public sealed class NonFiniteRouterLogitsException(string message) : Exception(message);
