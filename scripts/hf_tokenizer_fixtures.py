"""Writes the tokenizer and chat-template fixtures with Hugging Face `tokenizers` and `transformers`.

Usage: python3 scripts/hf_tokenizer_fixtures.py ASSET_DIR FIXTURE_DIR
Reads FIXTURE_DIR/tokenizer_corpus.json and FIXTURE_DIR/chat_conversations.json and writes
FIXTURE_DIR/tokenizer_expected.json and FIXTURE_DIR/chat_expected.json.
"""
import json
import sys
from pathlib import Path

from tokenizers import Tokenizer
from transformers import AutoTokenizer


def main() -> None:
    asset_dir, fixture_dir = Path(sys.argv[1]), Path(sys.argv[2])
    tokenizer = Tokenizer.from_file(str(asset_dir / "tokenizer.json"))
    corpus = json.loads((fixture_dir / "tokenizer_corpus.json").read_text(encoding="utf-8"))
    encoded = [{"text": text, "ids": tokenizer.encode(text, add_special_tokens=False).ids} for text in corpus]
    (fixture_dir / "tokenizer_expected.json").write_text(
        json.dumps(encoded, ensure_ascii=False, indent=1), encoding="utf-8")

    chat_tokenizer = AutoTokenizer.from_pretrained(str(asset_dir))
    conversations = json.loads((fixture_dir / "chat_conversations.json").read_text(encoding="utf-8"))
    expected = []
    for conversation in conversations:
        for enable_thinking in (True, False):
            text = chat_tokenizer.apply_chat_template(
                conversation["messages"], tokenize=False, add_generation_prompt=True,
                enable_thinking=enable_thinking)
            expected.append({"messages": conversation["messages"], "enable_thinking": enable_thinking, "text": text})
    (fixture_dir / "chat_expected.json").write_text(
        json.dumps(expected, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
