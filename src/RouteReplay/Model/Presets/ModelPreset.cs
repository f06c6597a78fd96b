using RouteReplay.Model.Checkpoints;

namespace RouteReplay.Model.Presets;

/// <summary>A named model architecture that <see cref="ModelMaker"/> can build with random weights.</summary>
/// <param name="Name">The preset name, e.g. <c>tiny</c>.</param>
/// <param name="Config">The architecture the preset's <c>config.json</c> describes.</param>
public sealed record ModelPreset(string Name, ModelConfig Config);
