"""Log-probabilities of tokens under the AR view, with SGLang 0.5.17's semantics.

- Emitted tokens: log_softmax(logits / T) of the AR (verify) row that produced the token, with
  T = the request's temperature when it samples and 1 when it is greedy; no top-k / top-p
  (SGLang's sampler returns log(softmax(logits / T)) unless SGLANG_RETURN_ORIGINAL_LOGPROB).
- Prompt tokens: raw log_softmax of the prefill rows (SGLang never scales input logprobs).
  Position ``prompt_start`` has no entry of its own (None), as in SGLang, whose
  input_token_logprobs are ``[None] + rows[prompt_start .. len-2]``.

Only AR-view logits ever reach here, so Orthrus and plain AR decoding report the same numbers.
The types are torch-free (the gateway imports them); ``token_logprobs`` needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

Pairs = tuple[tuple[int, float], ...]  # (token id, logprob)


class TokenLogprob(NamedTuple):
    logprob: float | None  # None only for the first scored prompt position
    top: Pairs | None = None  # the top_k most likely tokens of the row, best first
    by_id: Pairs | None = None  # the logprobs of LogprobRequest.token_ids, in that order


@dataclass(frozen=True)
class LogprobRequest:
    """What to report: the emitted tokens' logprobs always, the rest when asked."""

    top_k: int = 0  # top logprobs per position (0: none)
    prompt_start: int | None = None  # first prompt position to report (None: no prompt logprobs)
    token_ids: tuple[int, ...] | None = None  # also report these tokens' logprobs at every position

    def __post_init__(self):
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top logprobs must be an integer >= 0, got {self.top_k!r}")
        if self.prompt_start is not None and (not isinstance(self.prompt_start, int) or self.prompt_start < 0):
            raise ValueError(f"the prompt logprob start must be an integer >= 0, got {self.prompt_start!r}")
        if self.token_ids is not None:
            object.__setattr__(self, "token_ids", tuple(self.token_ids))


def token_logprobs(logits, tokens, request: LogprobRequest, temperature: float = 1.0) -> list[TokenLogprob]:
    """One TokenLogprob per row: logits [T, V] (any float dtype), tokens: T token ids."""
    import torch

    logprobs = torch.log_softmax(logits.float() / temperature, dim=-1)
    ids = torch.as_tensor(list(tokens), dtype=torch.long, device=logprobs.device)
    chosen = logprobs.gather(-1, ids.unsqueeze(-1)).squeeze(-1).tolist()
    top = by_id = None
    if request.top_k:
        values, indices = logprobs.topk(min(request.top_k, logprobs.shape[-1]), dim=-1)
        top = [tuple(zip(i, v)) for i, v in zip(indices.tolist(), values.tolist())]
    if request.token_ids:
        wanted = torch.as_tensor(request.token_ids, dtype=torch.long, device=logprobs.device)
        by_id = [tuple(zip(request.token_ids, row)) for row in logprobs[:, wanted].tolist()]
    return [TokenLogprob(lp, top[j] if top else None, by_id[j] if by_id else None) for j, lp in enumerate(chosen)]
