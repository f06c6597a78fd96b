using RouteReplay.Model.Presets;

namespace RouteReplay.Model.Checkpoints;

/// <summary>What a weight tensor does, which decides how <see cref="ModelMaker"/> initializes it.</summary>
internal enum WeightRole
{
    Embedding,
    Norm,
    Linear,
    Router,
    Bias,
}
