"""The cells of a bench.throughput run: one (prompt set, concurrency, output length) that every mode
runs, the untimed warm-ups before them, and which of them a mode runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .prompts import load_prompts, synthetic
from .record import Mode

WARMUP_PROMPT_LEN, WARMUP_OUT_LEN = 32, 16
CONTEXT_REQUESTS = 2  # per context length, one after another: long prompts make each one slow
# Synthetic prompt ids: above the low control ids, below the added special tokens of large
# vocabularies (Qwen3's start at 151643), as the earlier GPU runs drew them.
PROMPT_ID_LOW, PROMPT_ID_HIGH = 100, 100_000


@dataclass
class Cell:
    """One (prompt set, concurrency, output length): the unit every mode runs."""

    sweep: str
    dataset: str
    concurrency: int
    out_len: int
    prompts: list[list[int]]
    warmup: list[list[int]] | None = None  # untimed first: a new prefill size may JIT-compile kernels
    # --repeats: the prompt sets of the runs after the first (fresh prompts: no prefix-cache hits)
    repeat_prompts: list[list[list[int]]] = field(default_factory=list)
    temperature: float = 0.0  # 0: greedy

    @property
    def label(self) -> str:
        if self.sweep == "context":
            label = f"context {len(self.prompts[0])}"
        elif self.sweep == "dataset":
            label = f"{self.dataset}, concurrency {self.concurrency}"
        else:
            label = f"concurrency {self.concurrency}"
        return label + (f", T={self.temperature:g}" if self.temperature else "")


def dataset_paths(args) -> list[Path | None]:
    if not args.dataset_path:
        return [None] * len(args.datasets)
    if len(args.dataset_path) == 1 and Path(args.dataset_path[0]).is_dir():
        return [Path(args.dataset_path[0]) / f"{name}.jsonl" for name in args.datasets]
    return [Path(p) for p in args.dataset_path]


def requests_at(requests: str | int | None, concurrency: int) -> int:
    """Requests of a concurrency cell: --requests as a number, Kx (K times the level, at least 2), or
    None (max(c, 2): every slot busy once)."""
    if requests is None:
        return max(concurrency, 2)
    text = str(requests).strip().lower()
    if text.endswith("x"):
        return max(round(float(text[:-1]) * concurrency), 2)
    return int(text)


def plan_cells(args, vocab_size: int, tokenizer) -> tuple[list[Cell], list[Cell]]:
    """The warm-up cells (one per temperature and concurrency) and the measured cells, every cell at every
    temperature.

    Each cell draws its own prompts (no prefix-cache hits); the first temperature keeps the prompts
    a single-temperature run draws, so its rows compare with earlier runs'.
    """
    high = min(vocab_size, PROMPT_ID_HIGH)
    low = min(PROMPT_ID_LOW, high // 2)
    datasets = [(name, load_prompts(name, args.dataset_requests, tokenizer, path))
                for name, path in zip(args.datasets, dataset_paths(args))]
    warmups, cells = [], []
    for i, temperature in enumerate(args.temperature):
        suffix = f"/T{temperature:g}" if i else ""

        def prompts(n, length, tag):
            return synthetic(n, length, high, f"{args.seed}/{tag}{suffix}", low=low)

        # At every concurrency: the first steps at a batch size pay one-time costs (a Triton kernel's
        # specialisation compiled, a CUDA graph's first replay, accept graphs captured), which a short
        # timed cell would count (on an H100 the first c32 cell of the demo's shape ran 0.40x AR where
        # the same engine's next ran 0.81x, 2026-12-07).
        warmups += [Cell("warmup", "synthetic", c, WARMUP_OUT_LEN,
                         prompts(requests_at(None, c), min(args.prompt_len, WARMUP_PROMPT_LEN), f"warmup-c{c}"),
                         temperature=temperature) for c in args.concurrency]
        for c in args.concurrency:  # --repeats: one fresh prompt set per run; the first keeps earlier runs' tag
            sets = [prompts(requests_at(args.requests, c), args.prompt_len, f"c{c}/r{k}" if k else f"c{c}")
                    for k in range(args.repeats)]
            cells.append(Cell("concurrency", "synthetic", c, args.out_len, sets[0], temperature=temperature,
                              repeat_prompts=sets[1:]))
        cells += [Cell("context", "synthetic", 1, args.context_out_len, prompts(CONTEXT_REQUESTS, n, f"ctx{n}"),
                       warmup=prompts(1, n, f"ctx{n}-warmup"), temperature=temperature) for n in args.contexts]
        # Real prompts repeat across temperatures: a prefix-cache hit shortens only the prefill.
        cells += [Cell("dataset", name, min(args.dataset_concurrency, len(ids)), args.out_len, ids,
                       temperature=temperature) for name, ids in datasets]
    return warmups, cells


def cells_of(mode: Mode, modes: list[Mode], cells: list[Cell]) -> list[Cell]:
    """Every cell, less the greedy ones where the run has this mode's greedy twin (same step at T=0)."""
    if mode.greedy_twin != mode and mode.greedy_twin in modes:
        return [c for c in cells if c.temperature != 0]
    return cells
