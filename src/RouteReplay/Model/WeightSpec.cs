namespace RouteReplay.Model;

/// <summary>One weight tensor of a model: its transformers name, its shape and its role.</summary>
internal sealed record WeightSpec(string Name, long[] Shape, WeightRole Role);
