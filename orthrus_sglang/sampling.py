"""Sampling parameters and the logits -> probabilities transform.

The same transform (temperature, then top-k, then top-p) is applied to the AR view's
logits (p) and the diffusion view's logits (q): rejection sampling is lossless with respect
to the *filtered* AR distribution only if both sides see the same filtering.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Below this temperature a request is decoded greedily (argmax), the Orthrus default.
GREEDY_TEMPERATURE = 1e-5


@dataclass(frozen=True, slots=True)
class SamplingParams:
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
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
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            bad(f"seed must be an integer, got {self.seed!r}")
        if any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in self.stop_token_ids):
            bad(f"stop_token_ids must be non-negative integers, got {self.stop_token_ids!r}")
        object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids))

    @property
    def is_greedy(self) -> bool:
        return self.temperature < GREEDY_TEMPERATURE


def filtered_probs(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Probabilities after temperature, top-k and top-p, per row.

    logits: [bs, T, V]; temperature, top_p: float [bs]; top_k: int [bs] (0 = off).
    Returns float32 probabilities [bs, T, V] that sum to 1 over V.
    """
    bs, _, vocab = logits.shape
    probs = (logits.float() / temperature.view(bs, 1, 1)).softmax(dim=-1)
    sorted_probs, sorted_idx = probs.sort(dim=-1, descending=True)
    k = torch.where(top_k > 0, top_k, torch.full_like(top_k, vocab))
    rank = torch.arange(vocab, device=logits.device).view(1, 1, vocab)
    # As SGLang's sampler does: top-p mass is measured on the temperature-scaled
    # distribution before top-k, and the top token always survives both filters.
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    remove = (rank >= k.view(bs, 1, 1)) | (mass_before > top_p.view(bs, 1, 1))
    sorted_probs = sorted_probs.masked_fill(remove, 0.0)
    probs = torch.zeros_like(probs).scatter_(-1, sorted_idx, sorted_probs)
    return probs / probs.sum(dim=-1, keepdim=True)


def sample_from(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of ``probs`` [..., V] (long [...])."""
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])
