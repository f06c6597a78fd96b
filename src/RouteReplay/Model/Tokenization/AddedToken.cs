namespace RouteReplay.Model.Tokenization;

/// <summary>A token matched as a whole in the raw text before BPE (tokenizer.json's <c>added_tokens</c>).</summary>
/// <param name="Id">The token id.</param>
/// <param name="Content">The literal text of the token.</param>
/// <param name="Special">Whether decoding with skipped special tokens leaves it out.</param>
internal sealed record AddedToken(int Id, string Content, bool Special);
