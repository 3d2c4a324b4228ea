"""Per-request decode statistics: how many drafts each step accepted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


def tau_of(accept_length_histogram: Sequence[int]) -> float:
    """tau, the mean tokens per decode step with the bonus token (mean n + 1), from the histogram of
    steps by number of accepted drafts n; 0.0 without steps. Every figure named tau uses this."""
    steps = sum(accept_length_histogram)
    return sum((n + 1) * c for n, c in enumerate(accept_length_histogram)) / steps if steps else 0.0


@dataclass
class DecodeStats:
    """Counts over the decode steps of one request (the prefill's first token is not a step).

    accepted_per_position[i]: steps whose draft i+1 was accepted (len B-1).
    accept_length_histogram[n]: steps that accepted exactly n drafts (len B).
    tau: mean tokens per step, bonus included (= mean n + 1): the papers' acceptance length.
    """

    block_size: int
    num_steps: int = 0
    num_tokens: int = 0  # tokens emitted to the request, first (prefill) token included
    accepted_per_position: list[int] = field(default_factory=list)
    accept_length_histogram: list[int] = field(default_factory=list)

    def __post_init__(self):
        self.accepted_per_position = self.accepted_per_position or [0] * (self.block_size - 1)
        self.accept_length_histogram = self.accept_length_histogram or [0] * self.block_size

    def record_step(self, num_accepted: int) -> None:
        self.num_steps += 1
        self.accept_length_histogram[num_accepted] += 1
        for i in range(num_accepted):
            self.accepted_per_position[i] += 1

    @property
    def num_accepted_drafts(self) -> int:
        return sum(self.accepted_per_position)

    @property
    def tau(self) -> float:
        return tau_of(self.accept_length_histogram)

    def to_dict(self) -> dict:
        return {**asdict(self), "tau": self.tau}
