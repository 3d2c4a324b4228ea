"""Prompt sources: the shipped sets (``builtin``, ``broad``, ``ood``) or any local JSONL of prompts.

A prompt is a text (one user turn) or a chat (a list of {"role", "content"} messages whose last
turn is the user's); ``encode_prompts`` turns either into chat-templated token ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

from .jsonl import jsonl_records

BUILTIN = "builtin"  # the template generator (prompt_set.py): what the shipped demo view was trained on
BROAD = "broad"  # the generator mixed with real chats, code and passages (corpus.py)
OOD = "ood"  # sources never trained on (corpus.py); held-out only
SHIPPED = (BUILTIN, BROAD, OOD)
TEXT_FIELDS = ("prompt", "question", "problem", "instruction", "text")
SOURCES_HELP = ("'builtin' (template prompts), 'broad' (templates + real chats, code, passages), "
                "'ood' (held-out only: sources never trained on) or a JSONL of prompts")

Prompt = Union[str, list]  # a text, or a chat: [{"role": ..., "content": ...}, ...]


def _record_prompt(record) -> Prompt | None:
    if isinstance(record, str):
        return record if record.strip() else None
    if not isinstance(record, dict):
        return None
    messages = record.get("messages")
    if isinstance(messages, list) and messages and all(
            isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") in ("system", "user", "assistant")
            for m in messages) and messages[-1]["role"] == "user":
        return messages
    return next((record[k] for k in TEXT_FIELDS if isinstance(record.get(k), str) and record[k].strip()), None)


def read_jsonl_prompts(path: str | Path, n: int | None = None) -> list[Prompt]:
    """The first n prompts of a JSONL file: per line a string, an object with one of TEXT_FIELDS, or
    {"messages": [...]} (a chat ending with a user turn)."""
    prompts: list[Prompt] = []
    for lineno, record in jsonl_records(path, "prompt file"):
        if n is not None and len(prompts) >= n:
            break
        prompt = _record_prompt(record)
        if prompt is None:
            raise ValueError(f"{path}:{lineno}: expected a string, an object with one of {', '.join(TEXT_FIELDS)}, "
                             "or {\"messages\": [...]} ending with a user turn")
        prompts.append(prompt)
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


def read_prompts(source: str, n: int | None, *, split: str, seed: int = 0) -> list[Prompt]:
    """A shipped set's ``split`` ("train" or "heldout"; ``ood`` has held-out prompts only), or a JSONL path
    (split ignored)."""
    if source == BUILTIN:
        from .prompt_set import prompt_set

        return [p["prompt"] for p in prompt_set(split, n, seed=seed)]
    if source in (BROAD, OOD):
        from .corpus import broad_set, ood_set

        if source == OOD and split == "train":
            raise ValueError("'ood' prompts are never trained on: train on 'builtin', 'broad' or a JSONL")
        records = broad_set(split, 500 if n is None else n, seed=seed) if source == BROAD else ood_set(n, seed=seed)
        return [r["messages"] for r in records]
    return read_jsonl_prompts(source, n)


def encode_prompts(tokenizer, prompts: list[Prompt]) -> list[list[int]]:
    from ..prompting import encode_messages, encode_prompt

    # A one-turn chat is a text (the same ids through a chat template, and a tokenizer without one can still take it).
    return [encode_prompt(tokenizer, p if isinstance(p, str) else p[0]["content"]) if isinstance(p, str) or len(p) == 1
            else encode_messages(tokenizer, p) for p in prompts]
