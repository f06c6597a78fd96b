namespace RouteReplay.Model.Tokenization;

/// <summary>One message of a chat conversation, as a chat template renders it.</summary>
/// <param name="Role">"system", "user", "assistant" or "tool"; any other role is rejected.</param>
/// <param name="Content">The message text.</param>
/// <param name="ReasoningContent">
/// An assistant's reasoning kept apart from its answer; when null, the template takes the reasoning from a
/// <c>&lt;think&gt;...&lt;/think&gt;</c> block at the start of <paramref name="Content"/>.
/// </param>
public sealed record ChatMessage(string Role, string Content, string? ReasoningContent = null)
{
    /// <summary>The role of a system prompt.</summary>
    public const string SystemRole = "system";

    /// <summary>The role of the user's turns.</summary>
    public const string UserRole = "user";

    /// <summary>The role of the model's turns.</summary>
    public const string AssistantRole = "assistant";

    /// <summary>The role of a tool's result.</summary>
    public const string ToolRole = "tool";

    private readonly string _role = ValidRole(Role);
    private readonly string _content = Content ?? throw new ArgumentNullException(nameof(Content));

    /// <summary>"system", "user", "assistant" or "tool".</summary>
    /// <exception cref="ArgumentException">The role is none of those.</exception>
    public string Role
    {
        get => _role;
        init => _role = ValidRole(value);
    }

    /// <summary>The message text.</summary>
    public string Content
    {
        get => _content;
        init => _content = value ?? throw new ArgumentNullException(nameof(Content));
    }

    private static string ValidRole(string role) => role switch
    {
        SystemRole or UserRole or AssistantRole or ToolRole => role,
        _ => throw new ArgumentException(
            $"Unknown chat role '{role}'; expected '{SystemRole}', '{UserRole}', '{AssistantRole}' or '{ToolRole}'.",
            nameof(Role)),
    };
}
