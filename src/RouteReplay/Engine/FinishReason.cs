namespace RouteReplay.Engine;

public enum FinishReason
{
    /// <summary>An end-of-sequence token was sampled.</summary>
    Stop,

    /// <summary>The token budget (max tokens or the model length) ran out.</summary>
    Length,

    Abort,
}
