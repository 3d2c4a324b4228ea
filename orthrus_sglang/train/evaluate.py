"""Held-out acceptance: tau, per-position acceptance and tokens per step, greedy.

Two paths over the same prompts: the reference engine (CPU or GPU; any model object, so
training can evaluate its live weights) and SGLang (``--speculative-algorithm ORTHRUS`` in an
``sglang.Engine``; SGLang's CPU engine where there is no GPU). Both report the same counts:
``accept_length_histogram[n]`` = decode steps that accepted n drafts.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..sampling import SamplingParams
from ..stats import tau_of


@dataclass
class EvalResult:
    engine: str
    block_size: int
    num_prompts: int
    num_steps: int  # decode steps (the prefill's first token is not a step)
    num_tokens: int  # decoded tokens, prefill token excluded
    accept_length_histogram: list[int]
    outputs: list[list[int]] | None = None

    @property
    def tau(self) -> float:
        """Mean tokens per decode step (accepted drafts + the bonus token): the acceptance length."""
        return tau_of(self.accept_length_histogram)

    @property
    def tokens_per_step(self) -> float:
        """Tokens actually emitted per decode step (below tau when max_new_tokens or EOS cut a step short)."""
        return self.num_tokens / self.num_steps if self.num_steps else 0.0

    @property
    def acceptance_per_position(self) -> list[float]:
        """Fraction of steps whose draft k (k = 1..B-1) was accepted."""
        h = self.accept_length_histogram
        return [sum(h[k:]) / self.num_steps if self.num_steps else 0.0 for k in range(1, self.block_size)]

    def to_dict(self, *, with_outputs: bool = False) -> dict:
        d = asdict(self)
        if not with_outputs:
            d.pop("outputs")
        return {**d, "tau": self.tau, "tokens_per_step": self.tokens_per_step,
                "acceptance_per_position": self.acceptance_per_position}


def _params(max_new_tokens: int) -> SamplingParams:
    return SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)


def eval_reference(model, prompts: list[list[int]], *, block_size: int, max_new_tokens: int,
                   batch_size: int = 16, progress: bool = False, ar_only: bool = False) -> EvalResult:
    """Greedy Orthrus decoding of every prompt through the reference engine on ``model``'s device and dtype."""
    from tqdm import tqdm

    from ..ref.engine import Engine

    max_len = max(len(p) for p in prompts) + max_new_tokens
    engine = Engine(model=model, block_size=block_size, max_batch_size=min(batch_size, len(prompts)),
                    max_seq_len=max_len)
    bar = tqdm(total=len(prompts), desc=f"eval B={block_size}", unit="prompt", leave=False, disable=not progress)
    results = engine.generate(prompts, _params(max_new_tokens), ar_only=ar_only,
                              on_step=lambda out: bar.update(int(out.finished)))
    bar.close()
    hist = [0] * block_size
    for r in results:
        for n, c in enumerate(r.stats.accept_length_histogram):
            hist[n] += c
    return EvalResult("reference", block_size, len(prompts), sum(r.stats.num_steps for r in results),
                      sum(r.stats.num_tokens - 1 for r in results), hist, [r.token_ids for r in results])


def sglang_engine_args(model_path: str, *, block_size: int, device: str) -> dict:
    args = dict(model_path=str(model_path), speculative_algorithm="ORTHRUS", speculative_num_draft_tokens=block_size,
                skip_tokenizer_init=True, random_seed=0, log_level="error")
    if device == "cpu":  # SGLang's CPU engine (as tests/sgl runs it)
        os.environ["SGLANG_USE_CPU_ENGINE"] = "1"
        config = json.loads((Path(model_path) / "config.json").read_text())
        args.update(device="cpu", attention_backend="torch_native", disable_cuda_graph=True, dtype="float32",
                    mem_fraction_static=0.05, max_total_tokens=8192,
                    context_length=min(2048, config.get("max_position_embeddings", 2048)))
    else:  # how it is served: bf16; triton is validated with ORTHRUS (sgl/spec.py)
        args.update(attention_backend="triton", dtype="bfloat16")
    return args


def eval_sglang(model_path: str, prompts: list[list[int]], *, block_size: int, max_new_tokens: int,
                device: str = "cuda", engine=None, draft_weights: str = "bf16", **engine_overrides) -> EvalResult:
    """The same evaluation through SGLang; pass a running ``sglang.Engine`` as ``engine`` to reuse one.
    ``draft_weights``: what the draft pass of the engine started here reads (ORTHRUS_DRAFT_WEIGHTS)."""
    own = engine is None
    if draft_weights != "bf16" and not own:
        raise ValueError("draft_weights applies to an engine eval_sglang starts, not to one passed in")
    if own:
        args = sglang_engine_args(model_path, block_size=block_size, device=device)
        if device == "cpu" and draft_weights != "bf16":  # the copies count as weights; the KV stays capped
            args["mem_fraction_static"] = 0.15
        args.update(engine_overrides)
        import sglang  # after sglang_engine_args: SGLang reads SGLANG_USE_CPU_ENGINE at import

        from ..sgl.options import scheduler_env

        with scheduler_env({"ORTHRUS_DRAFT_WEIGHTS": draft_weights, "ORTHRUS_FP8_DRAFTS": None}):
            engine = sglang.Engine(**args)
    try:
        outs = engine.generate(input_ids=prompts, sampling_params={"temperature": 0.0, "max_new_tokens": max_new_tokens})
    finally:
        if own:
            engine.shutdown()
    hist = [0] * block_size
    steps = tokens = 0
    for o in outs:
        meta = o["meta_info"]
        for n, c in enumerate(meta.get("spec_correct_drafts_histogram") or []):
            hist[n] += c
        steps += int(meta.get("spec_verify_ct") or 0)
        tokens += len(o["output_ids"]) - 1
    return EvalResult("sglang", block_size, len(prompts), steps, tokens, hist, [o["output_ids"] for o in outs])


def eval_prompts(tokenizer, source: str, n: int, *, seed: int = 0) -> list[list[int]]:
    """A shipped set's held-out prompts (builtin, broad, ood) or a JSONL path; chat-templated token ids."""
    from .prompts import encode_prompts, read_prompts

    return encode_prompts(tokenizer, read_prompts(source, n, split="heldout", seed=seed))


def model_for_eval(model_dir: str, *, device: str, dtype: torch.dtype):
    from ..ref.loader import load_model

    return load_model(model_dir, device=device, dtype=dtype)
