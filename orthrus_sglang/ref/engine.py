"""The reference engine: continuous batching over draft -> verify -> accept -> commit.

Synchronous and not thread-safe: one owner calls ``add_request`` / ``abort`` / ``step``.
Requests join and leave between steps; each ``step`` prefills the newly admitted requests
(emitting their first token) and runs one decode step for every request already running.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from .. import step
from ..accept import RowSampling
from ..block_policy import BlockPolicy
from ..draft_weights import resolve
from ..logprobs import LogprobRequest, TokenLogprob, token_logprobs
from ..sampling import SamplingParams, candidate_bound
from ..stats import DecodeStats
from ..model_dir import resolve_model_dir
from .loader import load_config, load_model
from .model import ForwardBatch, OrthrusForCausalLM
from .request import Request

DEFAULT_MAX_SEQ_LEN = 4096

# Prompt logprob rows go through lm_head this many at a time (bounds the [rows, V] logits).
PROMPT_LOGPROB_CHUNK = 512

# Test hook: (requests, drafts long [bs, B-1]) -> drafts to verify instead. Greedy only.
DraftHook = Callable[[list[Request], torch.Tensor], torch.Tensor]


@dataclass
class StepOutput:
    request_id: str
    new_token_ids: list[int]
    finished: bool
    finish_reason: str | None
    stats: DecodeStats
    logprobs: list[TokenLogprob] | None = None  # one per new token, when the request asked for them
    prompt_logprobs: list[TokenLogprob] | None = None  # on the prefill's output, when asked for


@dataclass
class _Emitted:
    """What one engine step emits, by request id."""

    tokens: dict[str, list[int]] = field(default_factory=dict)
    logprobs: dict[str, list[TokenLogprob]] = field(default_factory=dict)
    prompt_logprobs: dict[str, list[TokenLogprob]] = field(default_factory=dict)


@dataclass
class GenerationResult:
    request_id: str
    token_ids: list[int]
    finish_reason: str
    stats: DecodeStats
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob] | None = None


class Engine:
    def __init__(self, model_path: str | Path | None = None, *, model: OrthrusForCausalLM | None = None,
                 tokenizer=None, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 block_size: int | None = None, max_batch_size: int = 8, max_seq_len: int | None = None,
                 fp8_drafts: bool = False, adaptive_block: bool = False, draft_weights: str | None = None):
        """block_size: B (default: the checkpoint's); adaptive_block: each step picks its B from 1 (AR), the
        powers of two below B and B itself, by expected tokens per second (block_policy.py);
        draft_weights: what the draft pass reads, bf16 (the checkpoint's), fp8, int4 or auto (draft_weights.py;
        fp8_drafts=True is draft_weights="fp8"). Output is the same for every kind."""
        if (model_path is None) == (model is None):
            raise ValueError("pass exactly one of model_path or model")
        if model is None:
            model_dir = resolve_model_dir(model_path)
            model = load_model(model_dir, device=device, dtype=dtype, config=load_config(model_dir))
            tokenizer = tokenizer or _load_tokenizer(model_dir)
            self.eos_token_ids = frozenset(model.config.eos_token_ids) | _generation_eos(model_dir)
        else:
            self.eos_token_ids = frozenset(model.config.eos_token_ids)
        self.model, self.config, self.tokenizer = model, model.config, tokenizer
        if fp8_drafts and draft_weights not in (None, "fp8"):
            raise ValueError(f"fp8_drafts=True and draft_weights={draft_weights!r} disagree")
        # auto: bf16 here, where every low-precision kind is an emulation (draft_weights.resolve)
        kind = resolve(draft_weights or ("fp8" if fp8_drafts else "bf16"))
        if kind != "bf16":  # low-precision copies for the draft pass (emulated); verify, hence output, unchanged
            model.quantize_drafts(kind)
        self.device = model.device
        self.block_size = block_size or self.config.block_size
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
        self.block_policy = BlockPolicy.adaptive(self.block_size) if adaptive_block else BlockPolicy.fixed(self.block_size)
        self.max_seq_len = max_seq_len or min(self.config.max_position_embeddings, DEFAULT_MAX_SEQ_LEN)
        # A verify block may run up to B-1 positions past the last token a request can keep.
        self.cache = model.new_cache(max_batch_size, self.max_seq_len + self.block_size)
        self.free_slots = list(range(max_batch_size - 1, -1, -1))
        self.waiting: deque[Request] = deque()
        self.running: dict[str, Request] = {}
        self.draft_hook: DraftHook | None = None

    # ---- request lifecycle -------------------------------------------------------------
    def add_request(self, prompt_ids: Sequence[int], params: SamplingParams | None = None, *,
                    request_id: str | None = None, ar_only: bool = False,
                    logprobs: LogprobRequest | None = None) -> str:
        """Queue a request. max_new_tokens 0 runs only the prefill (for prompt logprobs) and emits nothing.

        ``logprobs``: report AR log-probabilities (see orthrus_sglang.logprobs) with every output.
        """
        params = params or SamplingParams()
        prompt_ids = [int(t) for t in prompt_ids]
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        if min(prompt_ids) < 0 or max(prompt_ids) >= self.config.vocab_size:
            raise ValueError(f"prompt token ids must be in [0, {self.config.vocab_size})")
        if len(prompt_ids) + params.max_new_tokens > self.max_seq_len:
            raise ValueError(f"prompt ({len(prompt_ids)} tokens) + max_new_tokens ({params.max_new_tokens}) "
                             f"exceeds the context length {self.max_seq_len}")
        if logprobs is not None:
            if logprobs.prompt_start is not None and logprobs.prompt_start > len(prompt_ids):
                raise ValueError(f"the prompt logprob start {logprobs.prompt_start} is past the end of the prompt "
                                 f"({len(prompt_ids)} tokens)")
            if logprobs.token_ids and not all(0 <= t < self.config.vocab_size for t in logprobs.token_ids):
                raise ValueError(f"logprob token ids must be in [0, {self.config.vocab_size})")
        request_id = request_id or uuid.uuid4().hex
        if request_id in self.running or any(r.request_id == request_id for r in self.waiting):
            raise ValueError(f"request id {request_id!r} is already in use")
        # The seed keys every random number of this request (sampling.row_keys): same seed, same output.
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        stats = DecodeStats(block_size=1 if ar_only else self.block_size)
        self.waiting.append(Request(request_id, prompt_ids, params, ar_only, stats, seed, logprobs=logprobs))
        return request_id

    def abort(self, request_id: str) -> bool:
        """Drop a request wherever it is; its slot is free for the next step. False if unknown."""
        for req in self.waiting:
            if req.request_id == request_id:
                self.waiting.remove(req)
                return True
        req = self.running.pop(request_id, None)
        if req is None:
            return False
        self.free_slots.append(req.slot)
        return True

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    # ---- one engine step ---------------------------------------------------------------
    def step(self) -> list[StepOutput]:
        decoding = list(self.running.values())
        admitted = self._admit()
        emitted = _Emitted()
        if admitted:
            self._prefill(admitted, emitted)
        orthrus = [r for r in decoding if not r.ar_only]
        if orthrus:
            self._orthrus_step(orthrus, emitted)
        ar = [r for r in decoding if r.ar_only]
        if ar:
            self._ar_step(ar, emitted)
        outputs = []
        for request_id, tokens in emitted.tokens.items():
            req = self.running[request_id]
            outputs.append(StepOutput(request_id, tokens, req.finished, req.finish_reason, req.stats,
                                      emitted.logprobs.get(request_id), emitted.prompt_logprobs.get(request_id)))
            if req.finished:
                self.free_slots.append(self.running.pop(request_id).slot)
        return outputs

    def _admit(self) -> list[Request]:
        admitted = []
        while self.waiting and self.free_slots:
            req = self.waiting.popleft()
            req.slot = self.free_slots.pop()
            self.running[req.request_id] = req
            admitted.append(req)
        return admitted

    def _batch(self, reqs: list[Request], num_tokens: int, cached_lens: list[int] | None = None) -> ForwardBatch:
        lens = [r.committed_len for r in reqs] if cached_lens is None else cached_lens
        return ForwardBatch(slots=self._tensor([r.slot for r in reqs]), cached_lens=self._tensor(lens),
                            num_tokens=num_tokens)

    def _prefill(self, reqs: list[Request], emitted: _Emitted) -> None:
        """A plain AR pass over right-padded prompts; padding lands past each row's length and is masked."""
        lengths = [len(r.prompt_ids) for r in reqs]
        ids = torch.zeros(len(reqs), max(lengths), dtype=torch.long)
        for i, r in enumerate(reqs):
            ids[i, : lengths[i]] = torch.tensor(r.prompt_ids)
        batch = self._batch(reqs, max(lengths), cached_lens=[0] * len(reqs))
        hidden = self.model.hidden_states(ids.to(self.device), self.cache, batch, "ar")
        rows = torch.arange(len(reqs), device=self.device)
        logits = self.model.logits(hidden[rows, self._tensor(lengths) - 1].unsqueeze(1))
        first = self._choose(reqs, logits, self._tensor([n - 1 for n in lengths]))[:, 0].tolist()
        for i, (r, token) in enumerate(zip(reqs, first)):
            emitted.tokens[r.request_id] = r.commit([token], self.eos_token_ids)
            self._score(r, logits[i], emitted)
            if r.logprobs is not None and r.logprobs.prompt_start is not None:
                emitted.prompt_logprobs[r.request_id] = self._score_prompt(r, hidden[i])

    def _ar_step(self, reqs: list[Request], emitted: _Emitted) -> None:
        """The baseline: one AR token per step on the same model, cache and sampler."""
        ids = self._tensor([[r.last_token] for r in reqs])
        logits = self.model(ids, self.cache, self._batch(reqs, 1), "ar")
        positions = self._tensor([r.committed_len for r in reqs])
        for i, (r, token) in enumerate(zip(reqs, self._choose(reqs, logits, positions)[:, 0].tolist())):
            r.stats.record_step(0)
            emitted.tokens[r.request_id] = r.commit([token], self.eos_token_ids)
            self._score(r, logits[i], emitted)

    def _orthrus_step(self, reqs: list[Request], emitted: _Emitted) -> None:
        """make_block -> draft -> verify -> accept -> commit (orthrus_sglang/step.py), at the block size
        the policy picks for this batch size (always self.block_size unless adaptive)."""
        start = time.perf_counter()
        B = self.block_policy.choose(len(reqs))
        batch = self._batch(reqs, B)
        rows = self._rows(reqs, self.config.vocab_size)  # once per step: draft and accept share it
        block = step.make_block(self._tensor([r.last_token for r in reqs]), B, self.config.mask_token_id)
        drafts, draft_dist = self.draft(reqs, block, batch, rows)
        block[:, 1:] = drafts
        target_logits = self.verify(block, batch)
        num_accepted, bonus = self.accept(reqs, drafts, draft_dist, target_logits, rows)
        accepted = self.commit(reqs, drafts, num_accepted, bonus, target_logits, emitted)
        # commit read the results back to the host: the time covers the whole step on any device.
        self.block_policy.observe(len(reqs), B, accepted, time.perf_counter() - start)

    def draft(self, reqs: list[Request], block: torch.Tensor, batch: ForwardBatch, rows: RowSampling):
        """Diffusion view over [t, MASK x (B-1)]: drafts [bs, B-1] and, when any row samples, q
        (greedy rows: the argmax; sampled rows: a draw from q, filtered as p is)."""
        if block.shape[1] == 1:  # B = 1: plain AR, no draft pass
            return block[:, 1:], None
        drafts, dist = step.draft(self.model(block, self.cache, batch, "diff"), rows, batch.cached_lens)
        if self.draft_hook is not None:
            drafts = self.draft_hook(reqs, drafts.clone())
        return drafts, dist

    def verify(self, block: torch.Tensor, batch: ForwardBatch) -> torch.Tensor:
        """The AR view over [t, d_1..d_{B-1}]: target logits [bs, B, V]; writes the KV of L..L+B-1."""
        return self.model(block, self.cache, batch, "ar")

    def accept(self, reqs, drafts, draft_dist, target_logits, rows) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy rows by prefix match, sampled rows by rejection sampling against q (step.accept)."""
        return step.accept(drafts, target_logits, rows, self._tensor([r.committed_len for r in reqs]), draft_dist)

    def commit(self, reqs, drafts, num_accepted, bonus, target_logits, emitted: _Emitted) -> list[int]:
        """Emit each request's accepted drafts and bonus; returns the accepted draft counts."""
        tokens, lengths = step.commit(drafts, num_accepted, bonus)
        lengths = lengths.tolist()
        for i, (r, row, length) in enumerate(zip(reqs, tokens.tolist(), lengths)):
            r.stats.record_step(length - 1)
            emitted.tokens[r.request_id] = r.commit(row[:length], self.eos_token_ids)
            self._score(r, target_logits[i], emitted)  # verify row j produced emitted token j
        return [length - 1 for length in lengths]

    # ---- logprobs ----------------------------------------------------------------------
    def _score(self, r: Request, logits: torch.Tensor, emitted: _Emitted) -> None:
        """Logprobs of the tokens r emitted this step; logits [>= n, V]: row j produced token j."""
        if r.logprobs is None:
            return
        tokens = emitted.tokens[r.request_id]
        temperature = 1.0 if r.params.is_greedy else float(r.params.temperature)
        emitted.logprobs[r.request_id] = token_logprobs(logits[: len(tokens)], tokens, r.logprobs, temperature)

    def _score_prompt(self, r: Request, hidden: torch.Tensor) -> list[TokenLogprob]:
        """Prompt positions prompt_start..len-1: None for the first, then row p-1's raw logprob of token p."""
        start, n = r.logprobs.prompt_start, len(r.prompt_ids)
        if start >= n:
            return []
        out = [TokenLogprob(None)]
        for lo in range(start, n - 1, PROMPT_LOGPROB_CHUNK):
            hi = min(lo + PROMPT_LOGPROB_CHUNK, n - 1)
            out += token_logprobs(self.model.logits(hidden[lo:hi]), r.prompt_ids[lo + 1 : hi + 1], r.logprobs)
        return out

    # ---- sampling ----------------------------------------------------------------------
    def _rows(self, reqs: list[Request], vocab: int) -> RowSampling:
        p = [r.params for r in reqs]
        greedy = [x.is_greedy for x in p]
        return RowSampling(
            greedy=torch.tensor(greedy, device=self.device),
            temperature=torch.tensor([max(x.temperature, 1e-5) for x in p], device=self.device),
            top_k=self._tensor([x.top_k for x in p]), top_p=torch.tensor([float(x.top_p) for x in p], device=self.device),
            min_p=torch.tensor([float(x.min_p) for x in p], device=self.device),
            seeds=self._tensor([r.seed for r in reqs]),
            bound=candidate_bound([0 if g else x.top_k for g, x in zip(greedy, p)],
                                  [1.0 if g else x.top_p for g, x in zip(greedy, p)], vocab),
            all_greedy=all(greedy))

    def _choose(self, reqs: list[Request], logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Next token per row of logits [bs, 1, V] at input positions [bs]: argmax (greedy) or a keyed draw."""
        return self._rows(reqs, logits.shape[-1]).sample(logits, positions.view(-1, 1))[0]

    def _tensor(self, values) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=self.device)

    # ---- offline API -------------------------------------------------------------------
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams | Sequence[SamplingParams] | None = None,
                 *, ar_only: bool = False, logprobs: LogprobRequest | None = None,
                 on_step: Callable[[StepOutput], None] | None = None) -> list[GenerationResult]:
        """Run prompts to completion (other requests in the engine keep being served)."""
        params_list = list(params) if isinstance(params, (list, tuple)) else [params or SamplingParams()] * len(prompts)
        if len(params_list) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(params_list)} sampling parameter sets")
        ids = [self.add_request(p, sp, ar_only=ar_only, logprobs=logprobs) for p, sp in zip(prompts, params_list)]
        tokens: dict[str, list[int]] = {i: [] for i in ids}
        scored: dict[str, list[TokenLogprob]] = {i: [] for i in ids}
        prompt_scored: dict[str, list[TokenLogprob] | None] = {}
        done: dict[str, GenerationResult] = {}
        try:
            while len(done) < len(ids):
                for out in self.step():
                    if out.request_id not in tokens:
                        continue
                    tokens[out.request_id] += out.new_token_ids
                    scored[out.request_id] += out.logprobs or []
                    if out.prompt_logprobs is not None:
                        prompt_scored[out.request_id] = out.prompt_logprobs
                    if on_step is not None:
                        on_step(out)
                    if out.finished:
                        done[out.request_id] = GenerationResult(
                            out.request_id, tokens[out.request_id], out.finish_reason, out.stats,
                            scored[out.request_id] if logprobs else None, prompt_scored.get(out.request_id))
        finally:
            for request_id in set(ids) - set(done):
                self.abort(request_id)  # an exception mid-run must not leak slots
        return [done[i] for i in ids]


def _load_tokenizer(model_dir: Path):
    if not any((model_dir / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def _generation_eos(model_dir: Path) -> frozenset[int]:
    path = model_dir / "generation_config.json"
    if not path.is_file():
        return frozenset()
    import json

    eos = json.loads(path.read_text()).get("eos_token_id")
    return frozenset([] if eos is None else eos if isinstance(eos, list) else [eos])
