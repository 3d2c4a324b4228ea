"""Self-distillation data: the base model's own greedy answers, so drafts learn what the verifier accepts.

Answers come from the reference engine in AR mode (continuous batching, the model's device and
dtype; works offline, for plain and Orthrus checkpoints alike). Written in chunks appended to
a JSONL, so an interrupted run (a deadline, a kill) resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..sampling import SamplingParams
from .data import Document, write_documents


def _done_count(path: Path, prompts: list[list[int]]) -> int:
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for i, line in enumerate(lines):  # the file must be a prefix of this prompt list
        if i >= len(prompts) or json.loads(line)["prompt_ids"] != prompts[i]:
            raise ValueError(f"{path}: was generated from other prompts (line {i + 1} differs); delete it or use another --out")
    return len(lines)


def distill(model, prompts: list[list[int]], out_path: str | Path, *, max_new_tokens: int, batch_size: int,
            chunk_size: int | None = None, progress: bool = True, deadline: float | None = None) -> int:
    """Append greedy answers of prompts[k:] to out_path (k = prompts already there). Returns how many are done.

    ``deadline``: a time.monotonic() value; no new chunk starts after it.
    """
    from tqdm import tqdm

    from ..ref.engine import Engine

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = _done_count(out_path, prompts)
    if done == len(prompts):
        return done
    chunk_size = chunk_size or 8 * batch_size
    engine = Engine(model=model, block_size=1, max_batch_size=min(batch_size, len(prompts)),
                    max_seq_len=max(len(p) for p in prompts) + max_new_tokens)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    bar = tqdm(total=len(prompts), initial=done, desc="distilling", unit="prompt", disable=not progress)
    tokens, start = 0, time.perf_counter()
    while done < len(prompts) and (deadline is None or time.monotonic() < deadline):
        chunk = prompts[done:done + chunk_size]
        results = engine.generate(chunk, params, ar_only=True, on_step=lambda out: bar.update(int(out.finished)))
        write_documents(out_path, [Document(p, r.token_ids) for p, r in zip(chunk, results)], append=True)
        done += len(chunk)
        tokens += sum(len(r.token_ids) for r in results)
        bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - start):.0f}")
    bar.close()
    return done
