"""One request's state: counters and token lists; everything else is derived."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..logprobs import LogprobRequest
from ..sampling import SamplingParams
from ..stats import DecodeStats


@dataclass
class Request:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    ar_only: bool
    stats: DecodeStats
    seed: int  # keys every random number of the request (sampling.row_keys): a seeded request replays exactly
    output_ids: list[int] = field(default_factory=list)
    slot: int | None = None
    finish_reason: str | None = None  # "stop" | "length" | "abort"
    logprobs: LogprobRequest | None = None  # report AR logprobs of what it emits (and of its prompt)

    @property
    def committed_len(self) -> int:
        """L: tokens whose AR KV is in the cache. The last output token t sits at position L."""
        return len(self.prompt_ids) + len(self.output_ids) - 1

    @property
    def last_token(self) -> int:
        return self.output_ids[-1]

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def commit(self, tokens: list[int], eos_token_ids: frozenset[int]) -> list[int]:
        """Append verified tokens up to the first stop token or the length budget.

        Returns the tokens actually emitted; nothing after a stop token is emitted.
        """
        emitted = []
        stops = set(self.params.stop_token_ids) | (set() if self.params.ignore_eos else eos_token_ids)
        for token in tokens:
            if len(self.output_ids) >= self.params.max_new_tokens:
                break
            self.output_ids.append(token)
            emitted.append(token)
            if token in stops:
                self.finish_reason = "stop"
                break
        self.stats.num_tokens += len(emitted)
        if self.finish_reason is None and len(self.output_ids) >= self.params.max_new_tokens:
            self.finish_reason = "length"
        return emitted
