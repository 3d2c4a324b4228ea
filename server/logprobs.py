"""Logprobs in the gateway: what a sequence asks for and what a backend hands back.

Numbers follow SGLang 0.5.17 (see orthrus_sglang/logprobs.py): an emitted token's logprob is
log_softmax(logits / T) of the AR row that produced it (T = 1 for greedy requests), a prompt
token's is the raw log_softmax of the prefill row before it, and the first scored prompt
position has none. The embedded engine's orthrus_sglang.logprobs.TokenLogprob has the same
fields as TokenLogprob here; the SGLang backend builds these from SGLang's meta_info.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

Pairs = tuple[tuple[int, float], ...]  # (token id, logprob)


@dataclass(frozen=True)
class LogprobSpec:
    top_k: int = 0  # top logprobs per position
    prompt_start: int | None = None  # first prompt position to report; None: none of the prompt
    token_ids: tuple[int, ...] | None = None  # also report these tokens' logprobs at every position


class TokenLogprob(NamedTuple):
    logprob: float | None  # None only for the first scored prompt position
    top: Pairs | None = None  # best first
    by_id: Pairs | None = None  # LogprobSpec.token_ids, in that order


class TokenTexts:
    """Token id -> that token decoded alone (as SGLang's `batch_decode([[id]])`), cached."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self._cache: dict[int, str] = {}

    def __call__(self, ids) -> list[str]:
        missing = list(dict.fromkeys(i for i in ids if i not in self._cache))
        if missing:
            self._cache.update(zip(missing, self._tokenizer.batch_decode([[i] for i in missing])))
        return [self._cache[i] for i in ids]

    def one(self, token_id: int) -> str:
        return self([token_id])[0]
