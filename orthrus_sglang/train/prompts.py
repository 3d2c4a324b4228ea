"""Prompt sources: the shipped set (``builtin``) or any local JSONL of prompts."""

from __future__ import annotations

import json
from pathlib import Path

BUILTIN = "builtin"
TEXT_FIELDS = ("prompt", "question", "problem", "instruction", "text")


def read_jsonl_texts(path: str | Path, n: int | None = None) -> list[str]:
    """The first n prompts of a JSONL file: per line a string, or an object with one of TEXT_FIELDS."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prompt file")
    texts = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if n is not None and len(texts) >= n:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON ({exc})") from exc
            text = record if isinstance(record, str) else next(
                (record[k] for k in TEXT_FIELDS if isinstance(record, dict) and isinstance(record.get(k), str)), None)
            if not text or not text.strip():
                raise ValueError(f"{path}:{lineno}: expected a string or an object with one of {', '.join(TEXT_FIELDS)}")
            texts.append(text)
    if not texts:
        raise ValueError(f"{path}: no prompts")
    return texts


def read_prompt_texts(source: str, n: int | None, *, split: str, seed: int = 0) -> list[str]:
    """``builtin``: the shipped set's ``split``; anything else: a JSONL path (split ignored)."""
    if source == BUILTIN:
        from .prompt_set import prompt_set

        return [p["prompt"] for p in prompt_set(split, n, seed=seed)]
    return read_jsonl_texts(source, n)
