"""What one benchmark run records: modes, per-request timings, and their aggregate rows.

Every backend (bench/backends/) returns ``RequestTiming`` lists; ``summarize`` turns one
(mode, concurrency, prompt set) cell into a ``RunResult`` row. The JSON written by
bench/throughput.py is ``asdict`` of these, so every raw figure is kept.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from typing import Protocol

from orthrus_sglang.stats import tau_of


# The bf16 ORTHRUS modes by their --modes name (bench.throughput, bench.demo_sglang): Mode fields beyond
# ORTHRUS's. -sd: drafts from q; -ag: accept graphs; adaptive: each step picks its block size; ar-steps: every
# step B=1 (no draft pass) through the ORTHRUS worker: the floor adaptive falls back to, against AR's step.
ORTHRUS_MODES = {
    "orthrus": {}, "orthrus-adaptive": {"block_policy": "adaptive"}, "orthrus-sd": {"sampled_drafts": True},
    "orthrus-ag": {"accept_graphs": True}, "orthrus-sd-ag": {"sampled_drafts": True, "accept_graphs": True},
    "orthrus-adaptive-ag": {"block_policy": "adaptive", "accept_graphs": True},
    "orthrus-ar-steps": {"block_policy": "adaptive", "block_sizes": "1"},
}
SAMPLING_ONLY = ("sampled_drafts", "accept_graphs")  # Mode fields that change only the sampled acceptance


@dataclass(frozen=True)
class Mode:
    """One server configuration: plain AR, ORTHRUS at a block size, or the DFLASH peer."""

    name: str  # "AR" | "ORTHRUS" | "DFLASH"
    block_size: int | None = None
    pinned_tau: float | None = None  # SGLANG_SIMULATE_ACC_LEN: acceptance pinned, NOT lossless
    # ORTHRUS_SIMULATE_ACCEPT_RATE: each draft accepted with this probability after its predecessors
    # (a geometric profile per request), NOT lossless
    accept_rate: float | None = None
    draft_weights: str = "bf16"  # ORTHRUS only: what the draft pass reads (ORTHRUS_DRAFT_WEIGHTS: bf16, auto, fp8, int4)
    sampled_drafts: bool = False  # ORTHRUS only: drafts drawn from q (--speculative-use-rejection-sampling)
    attention_backend: str | None = None  # set when a run compares backends; None: the run's only one
    # ORTHRUS only: fixed (every step at block_size) or adaptive (each step picks from 1, 2, 4, .. block_size:
    # ORTHRUS_BLOCK_POLICY in SGLang, Engine(adaptive_block=True) in the reference engine)
    block_policy: str = "fixed"
    accept_graphs: bool = False  # ORTHRUS only: sampled acceptance replayed from CUDA graphs (ORTHRUS_ACCEPT_GRAPHS)
    block_sizes: str | None = None  # ORTHRUS adaptive only: the sizes it picks from (ORTHRUS_BLOCK_SIZES); None: 1, 2, 4, .. B

    @property
    def greedy_twin(self) -> "Mode":
        """The mode whose greedy step this one's is: drafts from q and accept graphs change only the
        sampled acceptance, so at T=0 a mode with either runs its twin's step."""
        return replace(self, **dict.fromkeys(SAMPLING_ONLY, False))

    @property
    def simulated(self) -> bool:
        """Acceptance pinned or simulated: not lossless, outputs not compared."""
        return self.pinned_tau is not None or self.accept_rate is not None

    @property
    def algorithm(self) -> str:
        low = f" {self.draft_weights}" if self.draft_weights != "bf16" else ""
        policy = f" {self.block_policy}" if self.block_policy != "fixed" else ""
        if self.block_sizes == "1":
            policy = " AR-steps"  # adaptive with one size: every step B=1
        elif self.block_sizes:
            policy += f" sizes {self.block_sizes}"
        return (self.name + low + policy + (" sampled-drafts" if self.sampled_drafts else "")
                + (" accept-graphs" if self.accept_graphs else ""))

    @property
    def label(self) -> str:
        parts = [self.algorithm]
        if self.block_size:
            parts.append(f"B={self.block_size}" if self.block_policy == "fixed" else f"B<={self.block_size}")
        if self.pinned_tau:
            parts.append(f"tau pinned {self.pinned_tau:g}")
        if self.accept_rate:
            parts.append(f"acceptance {self.accept_rate:g}/draft")
        if self.attention_backend:
            parts.append(f"[{self.attention_backend}]")
        return " ".join(parts)


def request_sampling(args, index: int, temperature: float) -> dict:
    """SGLang sampling_params of request ``index`` of a cell at ``temperature``: greedy, or that
    temperature with --top-p/--top-k, seeded by the index (every mode draws with the same seeds)."""
    if temperature == 0:
        return {"temperature": 0.0}
    return {"temperature": temperature, "top_p": args.top_p, "top_k": args.top_k, "sampling_seed": index}


@dataclass
class RequestTiming:
    prompt_len: int
    output_ids: list[int]
    ttft_s: float  # submit -> first output token
    e2e_s: float  # submit -> last output token
    verify_steps: int = 0  # speculative decode steps (0 for AR)
    accept_histogram: list[int] = field(default_factory=list)  # [n] = steps that accepted n drafts
    accepted_per_position: list[int] = field(default_factory=list)  # [i] = steps whose draft i+1 was accepted


class Session(Protocol):
    def generate(self, prompts: list[list[int]], out_len: int, concurrency: int,
                 temperature: float = 0.0) -> list[RequestTiming]:
        """Ignore EOS, exactly out_len tokens each, at most `concurrency` requests in flight; greedy at
        temperature 0, else sampled as ``request_sampling`` says."""

    def memory(self) -> dict:
        """{"kv_pool_tokens": int | None, "max_running_requests": int | None, ...}"""

    def block_sizes(self) -> dict[int, int] | None:
        """Request-steps per block size run so far (cumulative: the bench takes differences); None if
        unknown (AR, or no metrics to read)."""

    def close(self) -> None: ...


class Backend(Protocol):
    name: str

    def describe(self) -> dict:
        """Printed next to every table (bench/report.py reads these keys; missing ones are left out):

        {"backend", "engine", "hardware", "device", "threads", "versions": {"torch", ...},
         "model": {"name", "backbone", "hidden_size", "num_layers", "num_heads", "num_kv_heads",
                   "head_dim", "vocab_size"}, "dtype", "attention_backend"}

        bench/throughput.py draws synthetic prompt ids below model.vocab_size. A backend may also
        carry a ``tokenizer`` attribute (a transformers tokenizer, or None): --datasets needs it.
        """

    def open(self, mode: Mode) -> Session: ...


@dataclass
class RunResult:
    mode: str  # Mode.label
    algorithm: str  # Mode.name
    block_size: int | None
    pinned_tau: float | None
    lossless: bool  # False when acceptance was pinned or simulated
    dataset: str
    concurrency: int
    num_requests: int
    prompt_len: float  # mean prompt tokens
    out_len: float  # mean output tokens
    wall_s: float
    total_tok_s: float  # all output tokens / wall
    per_request_tok_s: float  # mean over requests of output tokens / e2e
    ttft_ms: float  # mean
    ttft_p50_ms: float
    tpot_ms: float  # mean over requests of (e2e - ttft) / (n - 1)
    tau: float  # tokens per verify step, bonus included (1.0 for AR)
    verify_steps: int
    accept_histogram: list[int]
    accepted_per_position: list[int]
    speedup_vs_ar: float | None = None  # total_tok_s / the fastest AR's in the same run, same cell
    outputs_equal_ar: bool | None = None  # None: not comparable (pinned acceptance, or no AR cell)
    sweep: str = "concurrency"  # "concurrency" | "context" | "dataset": which table the row belongs to
    temperature: float = 0.0  # 0: greedy
    attention_backend: str | None = None  # Mode.attention_backend
    ar_reference: str | None = None  # the AR mode (label) speedup_vs_ar and outputs_equal_ar refer to
    # --repeats: every run's total tok/s (this row is the median one); empty for a single run
    repeat_tok_s: list[float] = field(default_factory=list)
    # request-steps per block size the step policy ran in this run ({"16": n, "4": m}); empty for AR, and
    # where the session cannot tell (SGLang without --enable-metrics)
    steps_by_block_size: dict[str, int] = field(default_factory=dict)


def _sum_lists(lists: list[list[int]]) -> list[int]:
    width = max((len(x) for x in lists), default=0)
    return [sum(x[i] for x in lists if i < len(x)) for i in range(width)]


def summarize(mode: Mode, dataset: str, concurrency: int, timings: list[RequestTiming], wall_s: float,
              sweep: str = "concurrency", temperature: float = 0.0) -> RunResult:
    if not timings:
        raise ValueError("no requests were timed")
    outs = [len(t.output_ids) for t in timings]
    histogram = _sum_lists([t.accept_histogram for t in timings])
    steps = sum(histogram) or sum(t.verify_steps for t in timings)
    tau = tau_of(histogram) or 1.0  # no verify steps: AR, one token per step
    tpots = [(t.e2e_s - t.ttft_s) / (n - 1) for t, n in zip(timings, outs) if n > 1]
    ttfts = [t.ttft_s * 1e3 for t in timings]
    return RunResult(
        mode=mode.label, algorithm=mode.algorithm, block_size=mode.block_size, pinned_tau=mode.pinned_tau,
        lossless=not mode.simulated, dataset=dataset, concurrency=concurrency, num_requests=len(timings),
        prompt_len=statistics.fmean(t.prompt_len for t in timings), out_len=statistics.fmean(outs), wall_s=wall_s,
        total_tok_s=sum(outs) / wall_s,
        per_request_tok_s=statistics.fmean(n / t.e2e_s for t, n in zip(timings, outs)),
        ttft_ms=statistics.fmean(ttfts), ttft_p50_ms=statistics.median(ttfts),
        tpot_ms=statistics.fmean(tpots) * 1e3 if tpots else 0.0,
        tau=tau, verify_steps=steps, accept_histogram=histogram,
        accepted_per_position=_sum_lists([t.accepted_per_position for t in timings]), sweep=sweep,
        temperature=temperature, attention_backend=mode.attention_backend)
