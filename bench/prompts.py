"""Benchmark prompts: seeded random token ids, or dataset questions through the chat template.

Datasets come from a local jsonl (one object per line, the text in "prompt", "question",
"problem" or "text") or, when the ``datasets`` package and the network are there, from the
hub. Both give the first ``n`` records in file order, so every mode sees the same prompts.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from orthrus_sglang.prompting import encode_prompt

TEXT_FIELDS = ("prompt", "question", "problem", "text")


@dataclass(frozen=True)
class HubSource:
    repo: str
    config: str | None
    split: str
    field: str


DATASETS = {
    "gsm8k": HubSource("openai/gsm8k", "main", "test", "question"),
    "math500": HubSource("HuggingFaceH4/MATH-500", None, "test", "problem"),
    "mbpp": HubSource("google-research-datasets/mbpp", "full", "test", "text"),
    "mtbench": HubSource("HuggingFaceH4/mt_bench_prompts", None, "train", "prompt"),  # "prompt": the turns
}


class DatasetError(ValueError):
    """A dataset that cannot be loaded; the message says what to pass instead."""


def synthetic(n: int, length: int, vocab_size: int, seed: int | str, low: int = 0) -> list[list[int]]:
    """n prompts of ``length`` ids in [low, vocab_size), the same on every run and machine.

    random.Random's generator and its str seeding (sha512) are fixed by Python, unlike torch's
    CPU/GPU generators; a str seed lets each cell draw its own prompts ("0/conc4").
    """
    if not 0 <= low < vocab_size:
        raise ValueError(f"need 0 <= low < vocab_size, got low={low}, vocab_size={vocab_size}")
    rng = random.Random(f"orthrus-bench/{seed}")
    return [[rng.randrange(low, vocab_size) for _ in range(length)] for _ in range(n)]


def record_text(record: dict, preferred: str | None = None) -> str:
    """The question of one record: its first text field; MT-Bench's turn lists give their first turn."""
    for name in ((preferred,) if preferred else ()) + TEXT_FIELDS:
        value = record.get(name)
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, str) and value.strip():
            tests = record.get("test_list")  # MBPP: the tests say which function name to write
            if tests and isinstance(tests, list):
                value += "\nYour code should pass these tests:\n" + "\n".join(map(str, tests))
            return value
    raise DatasetError(f"a record has none of the text fields {', '.join(TEXT_FIELDS)}: {sorted(record)}")


def read_jsonl(path: str | Path, n: int) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    texts = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if len(texts) >= n:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: not JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object")
            texts.append(record_text(record))
    if not texts:
        raise DatasetError(f"{path}: no records")
    return texts


def hub_texts(name: str, n: int) -> list[str]:
    source = DATASETS[name]
    hint = f"or pass --dataset-path with a local {name}.jsonl"
    try:
        from datasets import load_dataset
    except ImportError as exc:
        raise DatasetError(f"dataset {name!r}: the `datasets` package is not installed ({hint})") from exc
    try:
        data = load_dataset(source.repo, source.config, split=source.split)
    except Exception as exc:  # offline, gated, renamed: one message, with the way out
        raise DatasetError(f"dataset {name!r}: could not load {source.repo} from the hub: {exc} ({hint})") from exc
    return [record_text(data[i], source.field) for i in range(min(n, len(data)))]


def load_texts(name: str, n: int, path: str | Path | None = None) -> list[str]:
    if path is not None:
        return read_jsonl(path, n)
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)}; any name works with a local "
                           f"--dataset-path)")
    return hub_texts(name, n)


def load_prompts(name: str, n: int, tokenizer, path: str | Path | None = None) -> list[list[int]]:
    """Up to n prompts of dataset ``name`` as chat-templated token ids (the first n records)."""
    if tokenizer is None:
        raise DatasetError(f"dataset {name!r} needs a tokenizer, and this model has none")
    return [encode_prompt(tokenizer, text) for text in load_texts(name, n, path)]
