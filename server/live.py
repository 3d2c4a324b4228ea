"""Rolling numbers for the live page: tokens/s and tau per second, acceptance by position."""

from __future__ import annotations

import time
from collections import deque

from .stats import OrthrusStats

WINDOW_S = 120


class LiveStats:
    def __init__(self):
        self._seconds: deque[list] = deque(maxlen=WINDOW_S)  # [unix second, tokens, steps]
        self.totals = OrthrusStats(block_size=1)
        self.num_sequences = 0

    def _bucket(self, now: float) -> list:
        second = int(now)
        if not self._seconds or self._seconds[-1][0] != second:
            self._seconds.append([second, 0, 0])
        return self._seconds[-1]

    def on_chunk(self, num_tokens: int, num_new_steps: int) -> None:
        bucket = self._bucket(time.time())
        bucket[1] += num_tokens
        bucket[2] += num_new_steps

    def on_sequence_done(self, stats: OrthrusStats | None) -> None:
        self.num_sequences += 1
        if stats is not None:
            self.totals = self.totals.merge(stats)

    def snapshot(self) -> dict:
        now = int(time.time())
        by_second = {s: (tok, steps) for s, tok, steps in self._seconds}
        series = []
        for s in range(now - 60, now):  # complete seconds only
            tok, steps = by_second.get(s, (0, 0))
            series.append({"t": s, "tokens_per_s": tok, "tau": round(tok / steps, 3) if steps else None})
        t = self.totals
        return {
            "series": series,
            "sequences": self.num_sequences,
            "steps": t.num_steps,
            "tau": round(t.tau, 4),
            "acceptance_rate_per_position": [round(a / t.num_steps, 4) if t.num_steps else 0.0
                                             for a in t.accepted_per_position],
            "accept_length_histogram": t.accept_length_histogram,
        }
