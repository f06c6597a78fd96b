namespace RouteReplay.Model.Checkpoints;

/// <summary>
/// One weight tensor of a model: its transformers name, its shape and its role. <paramref name="Gain"/> scales the
/// random initialization (residual-branch output projections are damped so deep layers keep per-token variety).
/// </summary>
internal sealed record WeightSpec(string Name, long[] Shape, WeightRole Role, double Gain = 1.0);
