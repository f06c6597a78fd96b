using System.Text;

namespace RouteReplay.Model.Tokenization;

/// <summary>
/// The Qwen3 chat template (ChatML with <c>&lt;think&gt;</c> reasoning blocks) from Qwen3's tokenizer_config.json,
/// written out in C# for system, user and assistant messages; the Jinja text itself is only recognised, never run.
/// </summary>
internal static class Qwen3ChatTemplate
{
    private const string ThinkOpen = "<think>";
    private const string ThinkClose = "</think>";
    private const string ToolResponseOpen = "<tool_response>";
    private const string ToolResponseClose = "</tool_response>";
    private const string EmptyThinking = "<think>\n\n</think>\n\n";

    /// <summary>Fragments only the Qwen3 template has together (its reasoning placement and its enable_thinking switch).</summary>
    private static readonly string[] Signature = ["<|im_start|>", "last_query_index", "reasoning_content", "enable_thinking", "<think>\\n\\n</think>\\n\\n"];

    public static bool Recognizes(string template) => Signature.All(fragment => template.Contains(fragment, StringComparison.Ordinal));

    public static string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, bool enableThinking)
    {
        var text = new StringBuilder();
        var systemFirst = messages.Count > 0 && messages[0].Role == ChatMessage.SystemRole;
        if (systemFirst)
        {
            AppendTurn(text, messages[0]);
        }
        var lastQueryIndex = LastQueryIndex(messages);
        for (var index = systemFirst ? 1 : 0; index < messages.Count; index++)
        {
            var message = messages[index];
            switch (message.Role)
            {
                case ChatMessage.UserRole or ChatMessage.SystemRole:
                    AppendTurn(text, message);
                    break;
                case ChatMessage.AssistantRole:
                    AppendAssistant(text, message, showReasoning: index > lastQueryIndex, isLast: index == messages.Count - 1);
                    break;
                default:
                    throw new NotSupportedException(
                        $"Chat message {index} has role '{message.Role}'; tool messages and tool calls are not supported by the Qwen3 chat template here.");
            }
        }
        if (addGenerationPrompt)
        {
            text.Append("<|im_start|>assistant\n");
            if (!enableThinking)
            {
                text.Append(EmptyThinking);
            }
        }
        return text.ToString();
    }

    private static void AppendTurn(StringBuilder text, ChatMessage message) =>
        text.Append("<|im_start|>").Append(message.Role).Append('\n').Append(message.Content).Append("<|im_end|>\n");

    /// <summary>The last user message that is not a wrapped tool response; reasoning is shown only for assistant turns after it.</summary>
    private static int LastQueryIndex(IReadOnlyList<ChatMessage> messages)
    {
        for (var index = messages.Count - 1; index >= 0; index--)
        {
            var message = messages[index];
            if (message.Role == ChatMessage.UserRole && !IsToolResponse(message.Content))
            {
                return index;
            }
        }
        return messages.Count - 1;
    }

    private static bool IsToolResponse(string content) =>
        content.StartsWith(ToolResponseOpen, StringComparison.Ordinal) && content.EndsWith(ToolResponseClose, StringComparison.Ordinal);

    private static void AppendAssistant(StringBuilder text, ChatMessage message, bool showReasoning, bool isLast)
    {
        var (reasoning, answer) = SplitReasoning(message);
        text.Append("<|im_start|>assistant\n");
        if (showReasoning && (isLast || reasoning.Length > 0))
        {
            text.Append("<think>\n").Append(reasoning.Trim('\n')).Append("\n</think>\n\n").Append(answer.TrimStart('\n'));
        }
        else
        {
            text.Append(answer);
        }
        text.Append("<|im_end|>\n");
    }

    /// <summary>
    /// The reasoning and the answer: <see cref="ChatMessage.ReasoningContent"/> when given, otherwise the text
    /// up to the first <c>&lt;/think&gt;</c> (after its last <c>&lt;think&gt;</c>) and the text after the last one.
    /// </summary>
    private static (string Reasoning, string Answer) SplitReasoning(ChatMessage message)
    {
        var content = message.Content;
        if (message.ReasoningContent is { } reasoning)
        {
            return (reasoning, content);
        }
        var firstClose = content.IndexOf(ThinkClose, StringComparison.Ordinal);
        if (firstClose < 0)
        {
            return (string.Empty, content);
        }
        var lastClose = content.LastIndexOf(ThinkClose, StringComparison.Ordinal);
        var answer = content[(lastClose + ThinkClose.Length)..].TrimStart('\n');
        var beforeClose = content[..firstClose].TrimEnd('\n');
        var lastOpen = beforeClose.LastIndexOf(ThinkOpen, StringComparison.Ordinal);
        var thought = lastOpen < 0 ? beforeClose : beforeClose[(lastOpen + ThinkOpen.Length)..];
        return (thought.TrimStart('\n'), answer);
    }
}
