namespace RouteReplay.Model.Checkpoints;

/// <summary>
/// Reads RoPE settings in either spelling: transformers 4.x (<c>rope_theta</c> plus <c>rope_scaling</c>) or
/// 5.x (<c>rope_parameters</c> holding <c>rope_theta</c>, <c>rope_type</c> and the scaling fields).
/// </summary>
internal static class RopeConfigParser
{
    private const string DefaultType = "default";

    public static (double Theta, RopeScaling? Scaling) Parse(JsonObjectReader fields)
    {
        if (fields.OptionalObject("rope_parameters") is { } parameters)
        {
            var theta = parameters.OptionalDouble("rope_theta") ?? fields.OptionalDouble("rope_theta")
                ?? throw parameters.Error("rope_theta", "is required but missing (also at the top level)");
            return (PositiveTheta(parameters, theta), ParseScaling(fields, "rope_parameters", parameters, DefaultType));
        }
        var topLevelTheta = fields.RequiredDouble("rope_theta");
        var scaling = fields.OptionalObject("rope_scaling") is { } scalingFields
            ? ParseScaling(fields, "rope_scaling", scalingFields, defaultType: null)
            : null;
        return (PositiveTheta(fields, topLevelTheta), scaling);
    }

    private static double PositiveTheta(JsonObjectReader fields, double theta) =>
        theta > 0 ? theta : throw fields.Error("rope_theta", $"must be positive, but is {theta}");

    private static RopeScaling? ParseScaling(JsonObjectReader root, string key, JsonObjectReader scaling, string? defaultType)
    {
        var type = scaling.OptionalString("rope_type") ?? scaling.OptionalString("type") ?? defaultType
            ?? throw root.Error(key, "must give its type as rope_type or type");
        switch (type)
        {
            case DefaultType:
                return null;
            case "linear":
                return new RopeScaling(type, PositiveFactor(scaling), null, null, null, null);
            case "yarn":
                return new RopeScaling(
                    type,
                    PositiveFactor(scaling),
                    scaling.OptionalPositiveInt("original_max_position_embeddings"),
                    scaling.OptionalDouble("attention_factor"),
                    scaling.OptionalDouble("beta_fast"),
                    scaling.OptionalDouble("beta_slow"),
                    scaling.OptionalDouble("mscale"),
                    scaling.OptionalDouble("mscale_all_dim"),
                    scaling.OptionalBool("truncate") ?? true);
            default:
                throw root.Error(key, $"has rope type '{type}', which is not supported (supported: default, linear, yarn)");
        }
    }

    private static double PositiveFactor(JsonObjectReader scaling)
    {
        var factor = scaling.RequiredDouble("factor");
        return factor > 0 ? factor : throw scaling.Error("factor", $"must be positive, but is {factor}");
    }
}
