"""Prompt sources: the shipped set (``builtin``) or any local JSONL of prompts."""

from __future__ import annotations

from pathlib import Path

from .jsonl import jsonl_records

BUILTIN = "builtin"
TEXT_FIELDS = ("prompt", "question", "problem", "instruction", "text")


def read_jsonl_texts(path: str | Path, n: int | None = None) -> list[str]:
    """The first n prompts of a JSONL file: per line a string, or an object with one of TEXT_FIELDS."""
    texts = []
    for lineno, record in jsonl_records(path, "prompt file"):
        if n is not None and len(texts) >= n:
            break
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
