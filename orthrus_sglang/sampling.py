"""Sampling parameters, the logits -> probabilities transform, and counter-based randomness.

The same transform (temperature, then top-k, top-p and min-p) is applied to the AR view's
logits (p) and, where drafts are sampled, to the diffusion view's logits (q). Losslessness only
needs the drafts to come from the q used in acceptance; the identical filtering keeps q close to p.

Randomness is counter-based: every random number is a hash of (seed, position, stream, token id),
computed with device tensor ops. Same seed, same output, whatever the batch; no host sync and no
per-request torch.Generator, so it can live inside a captured graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .keyed_race import fused_race_enabled, keyed_race

# Below this temperature a request is decoded greedily (argmax), the Orthrus default.
GREEDY_TEMPERATURE = 1e-5

# Random streams: a key (seed, position, stream) is consumed by at most one decision that shapes
# the output. Position = the position of the input row whose logits are sampled.
STREAM_DRAFT, STREAM_ACCEPT, STREAM_TOKEN = 1, 2, 3


@dataclass(frozen=True, slots=True)
class SamplingParams:
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    min_p: float = 0.0  # 0.0 = off
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False

    def __post_init__(self):
        def bad(msg: str):
            raise ValueError(f"invalid sampling parameters: {msg}")

        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            bad(f"max_new_tokens must be an integer >= 0 (0: prefill only), got {self.max_new_tokens!r}")
        if not isinstance(self.temperature, (int, float)) or not 0.0 <= float(self.temperature) <= 100.0:
            bad(f"temperature must be a number in [0, 100], got {self.temperature!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            bad(f"top_k must be an integer >= 0 (0 disables it), got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0.0 < float(self.top_p) <= 1.0:
            bad(f"top_p must be in (0, 1], got {self.top_p!r}")
        if isinstance(self.min_p, bool) or not isinstance(self.min_p, (int, float)) or not 0.0 <= float(self.min_p) <= 1.0:
            bad(f"min_p must be in [0, 1], got {self.min_p!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            bad(f"seed must be an integer, got {self.seed!r}")
        if any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in self.stop_token_ids):
            bad(f"stop_token_ids must be non-negative integers, got {self.stop_token_ids!r}")
        object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids))

    @property
    def is_greedy(self) -> bool:
        return self.temperature < GREEDY_TEMPERATURE


def candidate_bound(top_ks, top_ps, vocab: int) -> int:
    """Host-side bound K on the tokens any row's top-k/top-p filter can keep (python lists, one per row).

    0: no row filters by top-k or top-p (min-p alone needs no sort). A row with top-p but no top-k
    needs the whole sorted vocabulary (K = vocab): pass top_k to avoid that sort.
    """
    bound = 0
    for k, p in zip(top_ks, top_ps):
        k = int(k)
        if 0 < k < vocab:
            bound = max(bound, k)
        elif float(p) < 1.0:
            return vocab
    return bound


def filtered_probs(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor,
                   min_p: torch.Tensor | None = None, bound: int | None = None) -> torch.Tensor:
    """Probabilities after temperature, top-k, top-p and min-p, per row, as SGLang's sampler filters.

    logits: [bs, T, V]; temperature, top_p, min_p: float [bs]; top_k: int [bs] (0 or >= V: off).
    bound: candidate_bound(...) of these rows (computed from the tensors when None: a host sync).
    Top-k and top-p only ever look at the ``bound`` most probable tokens (torch.topk, not a sort of
    the whole [bs, T, V]); min-p is a threshold relative to the top token. Returns float32 [bs, T, V]
    summing to 1 over V. Top-p mass is measured before top-k, and the top token always survives.
    """
    bs, _, vocab = logits.shape
    probs = (logits.float() / temperature.view(bs, 1, 1).float()).softmax(dim=-1)
    if bound is None:
        bound = candidate_bound(top_k.tolist(), top_p.tolist(), vocab)
    if bound > 0:
        k = torch.where((top_k > 0) & (top_k < vocab), top_k, torch.full_like(top_k, vocab)).view(bs, 1, 1)
        vals, idx = probs.topk(bound, dim=-1)  # sorted, [bs, T, bound]
        rank = torch.arange(bound, device=logits.device).view(1, 1, bound)
        mass_before = vals.cumsum(dim=-1) - vals
        keep = (rank < k) & (mass_before <= top_p.view(bs, 1, 1).float())
        kept = torch.zeros_like(probs).scatter_(-1, idx, vals * keep)
        # Rows that filter nothing keep every token, including those past the bound.
        filtering = ((k.view(bs) < vocab) | (top_p < 1.0)).view(bs, 1, 1)
        probs = torch.where(filtering, kept, probs)
    if min_p is not None:
        threshold = probs.amax(dim=-1, keepdim=True) * min_p.view(bs, 1, 1).float()
        probs = probs.masked_fill(probs < threshold, 0.0)
    return probs / probs.sum(dim=-1, keepdim=True)


# ---- counter-based randomness ------------------------------------------------------------------
_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for int64 x in [0, 2**32), without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def _fmix32(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 32-bit finaliser: a bijection of [0, 2**32) with full avalanche."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def row_keys(seeds: torch.Tensor, positions: torch.Tensor, stream: int) -> torch.Tensor:
    """32-bit keys of (seed, position, stream). seeds: int64 [bs]; positions: int64 [bs, T] -> [bs, T]."""
    s = seeds.to(torch.int64).view(-1, 1)
    h = _fmix32((s & _M32) ^ 0x9E3779B9)
    h = _fmix32(h ^ ((s >> 32) & _M32))
    h = _fmix32(h ^ (positions.to(torch.int64) & _M32))
    return _fmix32(h ^ (stream * 0x27D4EB2F & _M32))


# Bits of the hash a uniform keeps. 23 + the half-step is exact in float32 (a 24-bit significand), so
# U lies in [2^-24, 1 - 2^-24]: never 0 or 1, and -log(U) is finite and > 0. With 24 bits the top
# bucket rounded to 1.0, -log(U) was -0.0, and the race picked a uniformly random token (0/-0 = NaN,
# p/-0 = inf) in about V / 2^24 of draws: 0.9% of tokens at a 152K vocabulary.
_UNIFORM_BITS = 23


def uniforms(keys: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
    """Uniform floats strictly inside (0, 1): one per key [bs, T], or per key and column (cols: int64 [..., C] or [C])."""
    h = keys if cols is None else _fmix32(keys.unsqueeze(-1) ^ _fmix32(cols.to(torch.int64) + 0x632BE5AB))
    return ((h >> (32 - _UNIFORM_BITS)).to(torch.float32) + 0.5) * (1.0 / (1 << _UNIFORM_BITS))


def exponentials(keys: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
    """Exp(1) variates -log(U), finite and > 0, with uniforms' shapes."""
    return -uniforms(keys, cols).log()


def race(probs: torch.Tensor, exps: torch.Tensor) -> torch.Tensor:
    """The exponential race over the last axis: argmax_v probs[v] / E_v is a draw from probs.
    A token of probability 0 scores -1 and can never win against one of positive probability."""
    return torch.where(probs > 0, probs / exps, -1.0).argmax(dim=-1)


def sample_keyed(probs: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """One draw per row of probs [bs, T, V] by the exponential race (race), E_v = -log U(key, v).
    Exact: the argmax is distributed as probs. Returns long [bs, T].
    The hash works in int64 over [rows, V]: rows are raced a few at a time to bound that memory."""
    vocab = probs.shape[-1]
    flat, flat_keys = probs.reshape(-1, vocab), keys.reshape(-1)
    if fused_race_enabled(probs.device):  # one Triton kernel, the same tokens (keyed_race.py)
        return keyed_race(flat.float(), flat_keys).view(probs.shape[:-1])
    cols = torch.arange(vocab, device=probs.device)
    step = max(1, _race_elements(probs.device) // max(vocab, 1))
    drawn = [race(flat[i : i + step], exponentials(flat_keys[i : i + step], cols))
             for i in range(0, flat.shape[0], step)]
    return (torch.cat(drawn) if drawn else flat_keys.new_zeros(0)).view(probs.shape[:-1])


# Elements of [rows, V] that sample_keyed hashes at once (int64 temporaries). On a GPU, few large
# chunks (64 MB each: few launches); on a CPU, chunks that stay in cache (8 MB): measured 7x faster
# at V = 2^17 on 2 cores than 64 MB chunks, which made every pass a trip to memory.
_RACE_ELEMENTS = {"cuda": 1 << 23, "cpu": 1 << 20}


def _race_elements(device: torch.device) -> int:
    return _RACE_ELEMENTS.get(device.type, _RACE_ELEMENTS["cpu"])


def sample_from(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of ``probs`` [..., V] (long [...])."""
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])
