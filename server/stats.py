"""The `orthrus` object of a response: per-request decode statistics, from either backend.

Both backends reduce to the same counts: decode steps, accepted drafts per draft position and
the accept-length histogram (index n = steps that accepted n drafts). tau is tokens per step,
bonus included: orthrus_sglang.stats.tau_of, the one tau function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orthrus_sglang.stats import tau_of


@dataclass
class OrthrusStats:
    block_size: int
    num_steps: int = 0
    num_tokens: int = 0  # tokens emitted, the prefill's first token included
    accepted_per_position: list[int] = field(default_factory=list)  # len B-1
    accept_length_histogram: list[int] = field(default_factory=list)  # len B
    # SGLang without a histogram reports only its accept length = completion_tokens / verify count.
    tau_from_tokens: bool = False

    def __post_init__(self):
        B = max(self.block_size, 1)
        self.accepted_per_position = _fit(self.accepted_per_position, B - 1)
        self.accept_length_histogram = _fit(self.accept_length_histogram, B)

    @classmethod
    def from_decode_stats(cls, s) -> OrthrusStats:
        """A copy of the engine's DecodeStats (the engine keeps mutating its own object)."""
        return cls(s.block_size, s.num_steps, s.num_tokens, list(s.accepted_per_position),
                   list(s.accept_length_histogram))

    @classmethod
    def from_sglang_meta(cls, meta: dict, block_size: int | None) -> OrthrusStats | None:
        """SGLang's per-request meta_info -> stats; None when the server ran no speculative steps."""
        steps = meta.get("spec_verify_ct")
        if not isinstance(steps, int) or steps <= 0:
            return None
        hist = meta.get("spec_accept_histogram") or meta.get("spec_correct_drafts_histogram")
        tokens = int(meta.get("completion_tokens") or 0)
        if isinstance(hist, list) and hist and all(isinstance(h, int) for h in hist):
            B = max(block_size or 0, len(hist))
            # Greedy-chain acceptance: draft i was accepted in every step that accepted >= i drafts.
            per_pos = [sum(hist[i:]) for i in range(1, B)]
            return cls(B, steps, tokens, per_pos, list(hist))
        # No histogram: only the SGLang accept length (completion_tokens / verify count) is known.
        return cls(block_size or 1, steps, tokens, tau_from_tokens=True)

    @property
    def num_accepted_drafts(self) -> int:
        return sum(self.accepted_per_position)

    @property
    def tau(self) -> float:
        if self.tau_from_tokens:
            return self.num_tokens / self.num_steps if self.num_steps else 0.0
        return tau_of(self.accept_length_histogram)

    def merge(self, other: OrthrusStats) -> OrthrusStats:
        a, b = self, other
        return OrthrusStats(max(a.block_size, b.block_size), a.num_steps + b.num_steps, a.num_tokens + b.num_tokens,
                            _add(a.accepted_per_position, b.accepted_per_position),
                            _add(a.accept_length_histogram, b.accept_length_histogram),
                            tau_from_tokens=a.tau_from_tokens or b.tau_from_tokens)

    def to_json(self) -> dict:
        return {
            "steps": self.num_steps,
            "tokens": self.num_tokens,
            "tau": round(self.tau, 4),
            "block_size": self.block_size,
            "accepted_per_position": self.accepted_per_position,
            "acceptance_rate_per_position": [round(a / self.num_steps, 4) if self.num_steps else 0.0
                                             for a in self.accepted_per_position],
            "accept_length_histogram": self.accept_length_histogram,
        }


def merge_all(stats: list[OrthrusStats | None]) -> OrthrusStats | None:
    present = [s for s in stats if s is not None]
    if not present:
        return None
    out = present[0]
    for s in present[1:]:
        out = out.merge(s)
    return out


def _fit(values: list[int], n: int) -> list[int]:
    return list(values)[:n] + [0] * (n - len(values))


def _add(a: list[int], b: list[int]) -> list[int]:
    n = max(len(a), len(b))
    return [x + y for x, y in zip(_fit(a, n), _fit(b, n))]
