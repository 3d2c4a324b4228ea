"""The block size of each decode step, chosen by expected tokens per second (docs/design.md, "Block size").

A step with block size B over a batch of bs requests costs step(bs, B) seconds and emits E[n + 1 | B]
tokens per request, n the accepted drafts. With a_i the probability that draft i is accepted once
drafts 1..i-1 were (AcceptanceProfile), E[n + 1 | B] = 1 + sum_{i < B} prod_{j <= i} a_j. The
adaptive policy picks argmax_B E[n + 1 | B] / step(bs, B) over its candidate sizes; B = 1 is plain AR
decoding (no drafts, no draft pass). Output is lossless whatever B a step uses: the choice depends
only on earlier steps, never on the randomness or the drafts of the step it sizes.

The choice is a pure function of (profile, costs, bs, step count): given the same statistics, both
engines choose the same B. The running server fills the cost table itself: a candidate never
measured at any batch size runs first (smallest first); at a batch size where it was not measured,
its cost is that of the nearest measured batch size; and every REFRESH_STEPS steps at a batch size
the candidate measured longest ago there runs once more, so one slow measurement (a cold start, a
busy machine) cannot exclude a block size for good, nor stale acceptance counts keep a large B from
being tried again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Per step that reaches a position, its counts are multiplied by this first: about the last
# 1 / (1 - DECAY) steps that drafted it matter.
DECAY = 0.99
# The prior of an unobserved position: PRIOR_WEIGHT pseudo-draws accepted at rate PRIOR_ACCEPT.
PRIOR_ACCEPT, PRIOR_WEIGHT = 0.5, 1.0
# A step's cost is the least of its last COST_WINDOW measurements: interference (other processes,
# a cold allocator) only ever slows a step down, and a window still follows real change (longer
# contexts). Measured on the 2-core CI machine, one slow first measurement of B=8 kept the demo at
# plain AR for 808 steps when costs were averages that only the chosen B updated.
COST_WINDOW = 5
# Every this many steps at a batch size, the candidate measured longest ago runs once (about 1.5%).
REFRESH_STEPS = 64


def default_candidates(block_size: int) -> tuple[int, ...]:
    """1 (AR), the powers of two below block_size, and block_size itself."""
    sizes, b = {1, block_size}, 2
    while b < block_size:
        sizes.add(b)
        b *= 2
    return tuple(sorted(sizes))


def draft_counts(num_accepted: list[int], drafts: int) -> list[int]:
    """counts[n]: the requests of one step that accepted n drafts (n clamped to drafts)."""
    counts = [0] * (drafts + 1)
    for n in num_accepted:
        counts[min(int(n), drafts)] += 1
    return counts


def position_counts(num_accepted: list[int], drafts: int) -> list[tuple[int, int]]:
    """Per draft position of one step, up to the last any request reached: (requests that reached draft i+1,
    requests that accepted it), i.e. (n >= i, n > i) with n a request's accepted drafts (at most drafts).
    Counted per position, not per request: both engines' policies and the SGLang metrics run it every step."""
    return positions_from_counts(draft_counts(num_accepted, drafts))


def positions_from_counts(counts: list[int]) -> list[tuple[int, int]]:
    """position_counts from draft_counts' counts."""
    at_least, out = sum(counts), []
    for i in range(len(counts) - 1):
        if not at_least:
            break
        reached = at_least
        at_least -= counts[i]
        out.append((reached, at_least))
    return out


@dataclass
class AcceptanceProfile:
    """Decayed counts of draft positions reached and accepted, shared by every request of a server.

    reached[i] / accepted[i]: draft i+1 was verified / accepted (its predecessors all were)."""

    max_drafts: int
    decay: float = DECAY
    reached: list[float] = field(default_factory=list)
    accepted: list[float] = field(default_factory=list)

    def __post_init__(self):
        self.reached = self.reached or [0.0] * self.max_drafts
        self.accepted = self.accepted or [0.0] * self.max_drafts

    def observe(self, block_size: int, num_accepted: list[int]) -> None:
        """One step: each request drafted block_size - 1 tokens and accepted num_accepted[r] of them.

        Only the positions this step reached decay: a position no step drafts keeps its estimate. Were
        every count decayed every step, a run of small blocks (B = 1 drafts nothing) would pull the
        positions of a larger B back to the prior, below what the model accepts, and keep that B out:
        through SGLang on a CPU (2026-12-07) the demo model then sat at B = 1 for most steps (tau 1.91
        against 3.17 at a fixed B=16). A larger B is measured again by the periodic refresh
        (StepCosts.stalest), which also refreshes its positions."""
        for i, (reached, accepted) in enumerate(position_counts(num_accepted, min(block_size - 1, self.max_drafts))):
            self.reached[i] = self.reached[i] * self.decay + reached
            self.accepted[i] = self.accepted[i] * self.decay + accepted

    def rate(self, i: int) -> float:
        """P(draft i+1 accepted | drafts 1..i accepted)."""
        return (self.accepted[i] + PRIOR_ACCEPT * PRIOR_WEIGHT) / (self.reached[i] + PRIOR_WEIGHT)

    def expected_tokens(self, block_size: int) -> float:
        """E[n + 1 | B]: the bonus plus each draft times the chance that it and all before it are accepted."""
        total, survive = 1.0, 1.0
        for i in range(min(block_size - 1, self.max_drafts)):
            survive *= self.rate(i)
            total += survive
        return total


@dataclass
class StepCosts:
    """Seconds per step by (batch size, block size): the least of the last COST_WINDOW measurements,
    None where never measured; ``measured_at`` the step count (per batch size) of the last one."""

    samples: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    measured_at: dict[tuple[int, int], int] = field(default_factory=dict)
    steps: dict[int, int] = field(default_factory=dict)  # steps run at each batch size

    def observe(self, batch_size: int, block_size: int, seconds: float | None) -> None:
        self.steps[batch_size] = self.steps.get(batch_size, 0) + 1
        if seconds is None:
            return
        key = (batch_size, block_size)
        self.samples[key] = (self.samples.get(key, []) + [seconds])[-COST_WINDOW:]
        self.measured_at[key] = self.steps[batch_size]

    def get(self, batch_size: int, block_size: int) -> float | None:
        samples = self.samples.get((batch_size, block_size))
        return min(samples) if samples else None

    def estimate(self, batch_size: int, block_size: int) -> float | None:
        """get(), or where this batch size never ran this block size, the cost at the nearest batch size
        that did (the larger on a tie: costs grow with the batch); None if no batch size did.
        Exploring every (bs, B) instead cost the demo a fifth of its steps at batch 4 on the CPU."""
        measured = [bs for bs, b in self.samples if b == block_size]
        if not measured:
            return None
        nearest = min(measured, key=lambda bs: (abs(bs - batch_size), -bs))
        return self.get(nearest, block_size)

    def stalest(self, batch_size: int, candidates: tuple[int, ...]) -> int | None:
        """Once every REFRESH_STEPS steps at this batch size: the candidate measured longest ago, if that
        was REFRESH_STEPS steps ago or more; otherwise None."""
        now = self.steps.get(batch_size, 0)
        if now == 0 or now % REFRESH_STEPS:
            return None
        oldest = min(candidates, key=lambda b: self.measured_at.get((batch_size, b), -1))
        return oldest if now - self.measured_at.get((batch_size, oldest), -1) >= REFRESH_STEPS else None


class BlockPolicy:
    """Chooses each step's block size: fixed (candidates = one size) or adaptive (several).

    choose(bs) -> B; after the step, observe(bs, B, num_accepted, seconds). Also keeps what the
    metrics show: steps per chosen B and tokens per step (tau) per B."""

    def __init__(self, candidates: tuple[int, ...] | list[int]):
        self.candidates = tuple(sorted(set(int(b) for b in candidates)))
        if not self.candidates or self.candidates[0] < 1:
            raise ValueError(f"block sizes must be >= 1, got {candidates!r}")
        self.profile = AcceptanceProfile(max_drafts=self.candidates[-1] - 1)
        self.costs = StepCosts()
        self.steps_by_block: dict[int, int] = {b: 0 for b in self.candidates}
        self.tokens_by_block: dict[int, int] = {b: 0 for b in self.candidates}

    @classmethod
    def fixed(cls, block_size: int) -> BlockPolicy:
        return cls((block_size,))

    @classmethod
    def adaptive(cls, block_size: int) -> BlockPolicy:
        return cls(default_candidates(block_size))

    @property
    def is_adaptive(self) -> bool:
        return len(self.candidates) > 1

    def choose(self, batch_size: int) -> int:
        if not self.is_adaptive:
            return self.candidates[0]
        return choose_block_size(self.candidates, self.profile, self.costs, batch_size)

    def observe(self, batch_size: int, block_size: int, num_accepted: list[int], seconds: float | None) -> None:
        self.profile.observe(block_size, num_accepted)
        self.costs.observe(batch_size, block_size, seconds)
        # block_size is always one of the candidates (choose), so these dicts never change size: the
        # gateway may read snapshot() from another thread while the engine steps.
        self.steps_by_block[block_size] += len(num_accepted)
        self.tokens_by_block[block_size] += sum(num_accepted) + len(num_accepted)

    def snapshot(self) -> dict:
        """What /metrics and the live page show: the candidates, request-steps and tau per B, the profile."""
        return {"candidates": list(self.candidates), "adaptive": self.is_adaptive,
                "steps_by_block_size": dict(self.steps_by_block),
                "tau_by_block_size": {b: (self.tokens_by_block[b] / s if s else 0.0)
                                      for b, s in self.steps_by_block.items()},
                "acceptance_by_position": [round(self.profile.rate(i), 4) for i in range(self.profile.max_drafts)]}


class CyclingBlockPolicy(BlockPolicy):
    """Every candidate in turn, one per step, whatever the statistics: a check that output stays lossless
    at every size and across switches (SGLang's ORTHRUS_BLOCK_POLICY=cycle), not a policy for speed."""

    def __init__(self, candidates: tuple[int, ...] | list[int]):
        super().__init__(candidates)
        self._turn = 0

    def choose(self, batch_size: int) -> int:
        block_size = self.candidates[self._turn % len(self.candidates)]
        self._turn += 1
        return block_size


def choose_block_size(candidates: tuple[int, ...], profile: AcceptanceProfile, costs: StepCosts,
                      batch_size: int) -> int:
    """argmax over candidates of E[n + 1 | B] / step(bs, B) (StepCosts.estimate); a candidate never
    measured first (the smallest), and the stalest one every REFRESH_STEPS steps (StepCosts.stalest)."""
    seconds = {b: costs.estimate(batch_size, b) for b in candidates}
    for b in candidates:
        if seconds[b] is None:
            return b
    stale = costs.stalest(batch_size, candidates)
    if stale is not None:
        return stale
    best, best_rate = candidates[0], -1.0
    for b in candidates:
        rate = profile.expected_tokens(b) / max(seconds[b], 1e-12)
        if rate > best_rate:  # ties keep the smaller block: same speed, less work
            best, best_rate = b, rate
    return best
