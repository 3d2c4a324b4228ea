"""The reference engine (orthrus_sglang.ref) as a benchmark backend: in process, CPU or CUDA.

The model is loaded once; each mode gets its own ``Engine`` over that model (an engine is
just a preallocated KV cache plus request bookkeeping). The engine preallocates one cache row
("slot") per running request, sized for the concurrency sweep: a call that needs more slots
or longer rows (the context sweep, long dataset prompts) runs on a temporary engine of
exactly that size, dropped after the call, so the CPU never holds max-concurrency x
max-context rows at once.
"""

from __future__ import annotations

import platform
import tempfile
import time
from collections import deque
from pathlib import Path

import torch

from orthrus_sglang import SamplingParams
from orthrus_sglang.ref.engine import Engine
from orthrus_sglang.testing import write_tiny_checkpoint

from ..bench_cpu import TINY_SHAPE, cpu_name
from ..record import Mode, RequestTiming, request_sampling

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TINY = "tiny"


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, args):
        if "dflash" in args.modes:
            raise ValueError("the embedded backend has no DFLASH mode (use --backend sglang)")
        if args.simulate_tau or args.simulate_accept_rate:
            raise ValueError("the embedded backend cannot pin acceptance (--simulate-tau and --simulate-accept-rate "
                             "need --backend sglang)")
        if "orthrus-sd" in args.modes:
            raise ValueError("the embedded engine always draws sampled requests' drafts from q: use --modes orthrus")
        if any(m.endswith("-ag") for m in args.modes):
            raise ValueError("the embedded engine has no CUDA graphs to replay the acceptance from: orthrus-ag and "
                             "orthrus-sd-ag need --backend sglang")
        if "orthrus-ar-steps" in args.modes:
            raise ValueError("the embedded engine picks from every block size up to B: orthrus-ar-steps needs "
                             "--backend sglang")
        if args.shape not in (None, TINY):
            raise ValueError(f"the embedded backend has no --shape {args.shape!r}: use --model for a real "
                             f"checkpoint, or leave --shape out for the tiny random model")
        if (args.dtype or "fp32") not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)} for the embedded backend")
        self.args = args
        self.device = args.device or "cpu"
        self.dtype = args.dtype or "fp32"
        self.slots = max(args.concurrency)
        self.seq_len = args.prompt_len + args.out_len
        longest = max([self.seq_len] + [c + args.context_out_len for c in args.contexts])
        with tempfile.TemporaryDirectory() as tmp:  # everything is in memory once the engine is built
            if args.model:
                path, self.model_name = args.model, str(args.model)
            else:
                shape = {**TINY_SHAPE, "max_position_embeddings": max(TINY_SHAPE["max_position_embeddings"], longest)}
                path, self.model_name = write_tiny_checkpoint(Path(tmp) / TINY, **shape), "tiny random Qwen3"
            first = Engine(path, device=self.device, dtype=DTYPES[self.dtype], max_batch_size=1)
        self.model, self.tokenizer = first.model, first.tokenizer
        self._low_models: dict[str, object] = {}

    def new_engine(self, block_size: int, slots: int, seq_len: int, draft_weights: str = "bf16",
                   adaptive_block: bool = False) -> Engine:
        model = self.low_precision_model(draft_weights) if draft_weights != "bf16" else self.model
        return Engine(model=model, tokenizer=self.tokenizer, block_size=block_size, max_batch_size=slots,
                      max_seq_len=seq_len, adaptive_block=adaptive_block)

    def low_precision_model(self, kind: str):
        """A copy of the model whose draft pass reads ``kind`` weights (emulated); the plain one stays as it is."""
        if kind not in self._low_models:
            import copy

            model = copy.deepcopy(self.model)
            model.quantize_drafts(kind)
            self._low_models[kind] = model
        return self._low_models[kind]

    def describe(self) -> dict:
        c = self.model.config
        on_gpu = self.model.device.type == "cuda"
        return {
            "backend": self.name, "engine": "orthrus reference engine",
            "hardware": torch.cuda.get_device_name(self.model.device) if on_gpu else cpu_name(),
            "device": str(self.model.device), "threads": torch.get_num_threads(),
            "versions": {"torch": torch.__version__, "python": platform.python_version()},
            "model": {"name": self.model_name, "backbone": c.backbone, "hidden_size": c.hidden_size,
                      "num_layers": c.num_hidden_layers, "num_heads": c.num_attention_heads,
                      "num_kv_heads": c.num_key_value_heads, "head_dim": c.head_dim, "vocab_size": c.vocab_size},
            "dtype": self.dtype, "attention_backend": "torch sdpa (pure PyTorch)",
        }

    def open(self, mode: Mode) -> EmbeddedSession:
        if mode.name == "DFLASH" or mode.simulated:
            raise ValueError(f"the embedded backend cannot run {mode.label}: it has no DFLASH and no pinned acceptance")
        if mode.name not in ("AR", "ORTHRUS"):
            raise ValueError(f"unknown mode {mode.name!r}")
        return EmbeddedSession(self, mode)


class EmbeddedSession:
    def __init__(self, backend: EmbeddedBackend, mode: Mode):
        self._backend = backend
        self._ar = mode.name == "AR"
        self._block = 1 if self._ar else mode.block_size  # AR rows need no room for a verify block
        self._weights = mode.draft_weights
        self._adaptive = mode.block_policy == "adaptive"
        self._engine: Engine | None = backend.new_engine(self._block, backend.slots, backend.seq_len, self._weights,
                                                         self._adaptive)
        self._steps_by_block: dict[int, int] = {}  # over every engine this session used (block_sizes)

    def _engine_for(self, concurrency: int, seq_len: int) -> Engine:
        e = self._engine
        if e.cache.num_slots >= concurrency and e.max_seq_len >= seq_len:
            return e
        return self._backend.new_engine(self._block, concurrency, seq_len, self._weights, self._adaptive)

    def generate(self, prompts: list[list[int]], out_len: int, concurrency: int,
                 temperature: float = 0.0) -> list[RequestTiming]:
        """Closed loop: a new request is submitted as soon as one finishes."""
        engine = self._engine_for(concurrency, max(map(len, prompts)) + out_len)
        ran_before = dict(engine.block_policy.steps_by_block)
        pending, live = deque(enumerate(prompts)), {}
        submit, first, last, stats = {}, {}, {}, {}
        outputs: list[list[int]] = [[] for _ in prompts]
        try:
            while pending or live:
                while pending and len(live) < concurrency:
                    i, prompt = pending.popleft()
                    submit[i] = time.perf_counter()
                    live[engine.add_request(prompt, self._params(i, out_len, temperature), ar_only=self._ar)] = i
                step = engine.step()
                now = time.perf_counter()  # step() returns host token ids: the step is done
                for out in step:
                    i = live[out.request_id]
                    if out.new_token_ids:
                        outputs[i] += out.new_token_ids
                        first.setdefault(i, now)
                        last[i] = now
                    if out.finished:
                        stats[i] = out.stats
                        del live[out.request_id]
        finally:
            for request_id in live:  # an error or Ctrl-C mid-cell must not leave requests behind
                engine.abort(request_id)
            for b, n in engine.block_policy.steps_by_block.items():
                self._steps_by_block[b] = self._steps_by_block.get(b, 0) + n - ran_before.get(b, 0)
        return [self._timing(len(p), outputs[i], first[i] - submit[i], last[i] - submit[i], stats[i])
                for i, p in enumerate(prompts)]

    def _params(self, index: int, out_len: int, temperature: float) -> SamplingParams:
        s = request_sampling(self._backend.args, index, temperature)
        return SamplingParams(max_new_tokens=out_len, ignore_eos=True, temperature=s["temperature"],
                              top_p=s.get("top_p", 1.0), top_k=max(s.get("top_k", 0), 0), seed=s.get("sampling_seed"))

    def _timing(self, prompt_len, output_ids, ttft_s, e2e_s, stats) -> RequestTiming:
        if self._ar:  # the AR path records one-token "steps"; they are not verify steps
            return RequestTiming(prompt_len, output_ids, ttft_s, e2e_s)
        return RequestTiming(prompt_len, output_ids, ttft_s, e2e_s, verify_steps=stats.num_steps,
                             accept_histogram=list(stats.accept_length_histogram),
                             accepted_per_position=list(stats.accepted_per_position))

    def memory(self) -> dict:
        cache = self._engine.cache
        # Rows are preallocated per request: a request longer than a row is never admitted.
        return {"kv_pool_tokens": cache.num_slots * cache.max_len, "max_running_requests": cache.num_slots,
                "kv_slot_tokens": cache.max_len}

    def block_sizes(self) -> dict[int, int] | None:
        return None if self._ar else dict(self._steps_by_block)

    def close(self) -> None:
        self._engine = None
        if self._backend.model.device.type == "cuda":
            torch.cuda.empty_cache()
