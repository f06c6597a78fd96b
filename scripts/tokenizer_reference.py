"""Writes the tokenizer and chat-template fixtures from Hugging Face `tokenizers` and `transformers`.

Run on a machine with both installed (the GPU machine), from the repository root:
    python3 scripts/tokenizer_reference.py
Reads the *_corpus / *_cases / chat_conversations inputs in tests/RouteReplay.Tests/Fixtures and writes the
matching *_expected.json files next to them, using assets/qwen3-tokenizer.
"""
import json
import pathlib

from tokenizers import Tokenizer
from transformers import AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "RouteReplay.Tests" / "Fixtures"
TOKENIZER = ROOT / "assets" / "qwen3-tokenizer"


def load(name):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def save(name, value):
    with open(FIXTURES / name, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)


def main():
    tokenizer = Tokenizer.from_file(str(TOKENIZER / "tokenizer.json"))
    chat = AutoTokenizer.from_pretrained(str(TOKENIZER))

    def ids(text):
        return tokenizer.encode(text, add_special_tokens=False).ids

    save("tokenizer_expected.json", [{"text": t, "ids": ids(t)} for t in load("tokenizer_corpus.json")])
    save("tokenizer_nfc_expected.json", [
        {"text": t, "ids": ids(t), "decoded": tokenizer.decode(ids(t), skip_special_tokens=False)}
        for t in load("tokenizer_nfc_corpus.json")])
    save("decode_expected.json", [
        {**case, "text": tokenizer.decode(case["ids"], skip_special_tokens=case["skip_special_tokens"])}
        for case in load("decode_cases.json")])

    def render(messages, add_generation_prompt, enable_thinking):
        return chat.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                        enable_thinking=enable_thinking)

    save("chat_expected.json", [
        {"messages": c["messages"], "enable_thinking": thinking, "text": render(c["messages"], True, thinking)}
        for c in load("chat_conversations.json") for thinking in (True, False)])
    save("chat_template_expected.json", [
        {**c, "enable_thinking": thinking, "text": render(c["messages"], c["add_generation_prompt"], thinking)}
        for c in load("chat_template_cases.json") for thinking in (True, False)])
    print("vocab size with added tokens:", tokenizer.get_vocab_size(with_added_tokens=True))


if __name__ == "__main__":
    main()
