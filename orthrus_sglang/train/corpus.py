"""Real prompts shipped with the package (corpus/, built by scripts/build_prompt_corpus.py; sources
and licences in corpus/SOURCES.md), and the two prompt sets made from them.

``broad``: the template generator (prompt_set.py) mixed with the in-distribution sources (chat
conversations, stdlib code, passages to summarise). Each source's records are split by group (a
conversation, a function, a passage) into train and a held-out tenth, so a held-out prompt's
conversation, code or passage never appears in training.

``ood``: the out-of-distribution sources, never trained on (HumanEval stubs, MMLU exam questions,
CodeIO algorithm tasks): acceptance there is what a user with other prompts than ours sees.
"""

from __future__ import annotations

import functools
import gzip
import json
import random
import zlib
from pathlib import Path

CORPUS_DIR = Path(__file__).with_name("corpus")
IN_DISTRIBUTION = {"chatterbot": 2, "stdlib": 3, "verne": 1}  # source -> weight in the broad mix
GENERATOR_WEIGHT = 4
OUT_OF_DISTRIBUTION = ("humaneval", "mmlu", "codeio")
HELDOUT_EVERY = 10  # a group is held out when crc32(group) % 10 == 0


@functools.lru_cache(maxsize=None)
def corpus_records(source: str) -> tuple[dict, ...]:
    """Every shipped record of ``source`` ({"source", "kind", "messages"[, "group"]}), in file order."""
    path = CORPUS_DIR / f"{source}.jsonl.gz"
    if not path.exists():
        raise ValueError(f"no shipped prompt source {source!r} ({path} is missing)")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f)


def is_heldout(record: dict) -> bool:
    return zlib.crc32(record["group"].encode("utf-8")) % HELDOUT_EVERY == 0


def _shuffled(records, seed: int, tag: str) -> list[dict]:
    out = list(records)
    random.Random(f"orthrus-corpus/{tag}/{seed}").shuffle(out)
    return out


def broad_set(split: str, n: int, *, seed: int = 0) -> list[dict]:
    """``n`` prompts of the broad mix's ``split`` ("train" or "heldout"): {"source", "kind", "messages"} records.

    Sources are drawn by weight; a corpus source that runs out leaves the mix (the generator never does)."""
    from .prompt_set import prompt_set

    if split not in ("train", "heldout"):
        raise ValueError(f"split must be train or heldout, got {split!r}")
    pools = {s: iter(_shuffled((r for r in corpus_records(s) if is_heldout(r) == (split == "heldout")), seed, f"{s}/{split}"))
             for s in IN_DISTRIBUTION}
    weights = {**IN_DISTRIBUTION, "generator": GENERATOR_WEIGHT}
    generated = iter(prompt_set(split, n, seed=seed))
    r = random.Random(f"orthrus-broad/{split}/{seed}")
    out: list[dict] = []
    while len(out) < n:
        source = r.choices(list(weights), list(weights.values()))[0]
        if source == "generator":
            record = next(generated)
            out.append({"source": "generator", "kind": record["kind"],
                        "messages": [{"role": "user", "content": record["prompt"]}]})
            continue
        record = next(pools[source], None)
        if record is None:
            del weights[source]
        else:
            out.append(record)
    return out


def ood_set(n: int | None = None, *, seed: int = 0) -> list[dict]:
    """``n`` prompts (all by default) of the out-of-distribution sources, interleaved so any prefix mixes them."""
    pools = [_shuffled(corpus_records(s), seed, s) for s in OUT_OF_DISTRIBUTION]
    out = [p[i] for i in range(max(map(len, pools))) for p in pools if i < len(p)]
    return out if n is None else out[:n]
